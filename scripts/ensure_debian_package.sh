#!/usr/bin/env bash
# Install a Debian package when its command is missing, as root or through password-less sudo;
# elsewhere (no apt-get, no root) print how to install it and exit 0, so that only the feature
# that needs it is affected. Idempotent. Used by ensure_graphviz.sh and ensure_chromium.sh.
#
#   bash scripts/ensure_debian_package.sh NAME COMMAND PACKAGE HINT
#
# NAME prefixes the log lines; COMMAND is what must end up on PATH; PACKAGE is apt's name;
# HINT says what to do by hand and what works without it.
set -euo pipefail

name=$1 command=$2 package=$3 hint=$4
log() { echo "$name: $*" >&2; }

if command -v "$command" >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here; $hint"
  exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "need root (or password-less sudo) to apt-get install $package; $hint"
  exit 0
fi

log "installing $package (apt-get install -y $package)"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$package" >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq "$package" >/dev/null
fi
command -v "$command" >/dev/null 2>&1 || { log "$package installed but no $command on PATH"; exit 1; }
