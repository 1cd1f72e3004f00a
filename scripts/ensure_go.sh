#!/usr/bin/env bash
# Ensure the Go toolchain and the Debian-packaged Go modules that raypipe's Go client builds
# against, in GOPATH mode (there is no Go module proxy on these machines):
#
#   bash scripts/ensure_go.sh
#
# `make clients` (so `make test`, `make lint` and `make proto`) runs it first. It installs, with
# apt-get, as root or through password-less sudo, whatever of these is missing: golang-go,
# protoc-gen-go and protoc-gen-go-grpc (the plugins `buf generate` runs), and the gRPC,
# protobuf and genproto sources under /usr/share/gocode. golang-github-golang-protobuf-1-5-dev
# is named explicitly: without it apt picks the 1.3 package, against which every RPC with a
# real message panics while health checks still pass. It fails (exit 1, saying what to do)
# when it cannot install them. Idempotent: with everything present it does nothing.
set -euo pipefail

log() { echo "ensure_go: $*" >&2; }

packages=(golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-google-genproto-dev)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here; install Go 1.19+ and these Debian packages' equivalents: ${missing[*]}"
    exit 1
  fi
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    log "need root (or password-less sudo) to apt-get install ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt=("${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -qq)
  if ! "${apt[@]}" install "${missing[@]}" >/dev/null; then
    "${apt[@]}" update
    "${apt[@]}" install "${missing[@]}" >/dev/null
  fi
fi

for command in go protoc-gen-go protoc-gen-go-grpc; do
  command -v "$command" >/dev/null 2>&1 || { log "no $command on PATH after installing"; exit 1; }
done
log "$(go version)"
