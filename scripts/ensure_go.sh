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
  log "installing ${missing[*]}"
  status=0
  bash "$(dirname "$0")/apt_install.sh" "${missing[@]}" || status=$?
  if ((status == 2)); then
    log "install Go 1.19+ and these Debian packages' equivalents yourself: ${missing[*]}"
  fi
  ((status == 0)) || exit 1
fi

for command in go protoc-gen-go protoc-gen-go-grpc; do
  command -v "$command" >/dev/null 2>&1 || { log "no $command on PATH after installing"; exit 1; }
done
log "$(go version)"
