#!/usr/bin/env bash
# Install a Debian package when its command is missing, as root or through password-less sudo;
# elsewhere (no apt-get, no root) print how to install it and exit 0, so that only the feature
# that needs it is affected. Idempotent. Used by ensure_graphviz.sh and ensure_chromium.sh;
# the installing is apt_install.sh's.
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
log "installing $package (apt-get install -y $package)"
status=0
bash "$(dirname "$0")/apt_install.sh" "$package" || status=$?
if ((status == 2)); then
  log "cannot install $package here; $hint"
  exit 0
elif ((status)); then
  exit "$status"
fi
command -v "$command" >/dev/null 2>&1 || { log "$package installed but no $command on PATH"; exit 1; }
