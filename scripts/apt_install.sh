#!/usr/bin/env bash
# apt-get install PACKAGE... as root or through password-less sudo, waiting up to 5 minutes for
# another apt to release its lock, and running `apt-get update` once if the first try fails.
# Shared by ensure_debian_package.sh and ensure_go.sh.
#
#   bash scripts/apt_install.sh PACKAGE...
#
# Exit status: 0 installed; 2 this machine cannot (no apt-get, or neither root nor
# password-less sudo; the reason is on stderr); anything else: apt-get failed.
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here" >&2
  exit 2
fi
if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "need root (or password-less sudo) to apt-get install $*" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt=("${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 -y -qq)
if ! "${apt[@]}" install "$@" >/dev/null; then
  "${apt[@]}" update
  "${apt[@]}" install "$@" >/dev/null
fi
