#!/usr/bin/env bash
# Ensure Debian's Chromium is installed, for the tests that drive a real browser (Playwright,
# with executable_path /usr/bin/chromium: Playwright's own browser download cannot be used).
#
#   bash scripts/ensure_chromium.sh
#
# On Debian/Ubuntu it installs the `chromium` package when `chromium` is missing, as root or
# through password-less sudo. Anywhere else it prints how to install it and exits 0: the browser
# tests then skip (and fail under CI, where this script always runs first). Idempotent: with
# `chromium` on PATH it does nothing. Set RAYPIPE_SKIP_CHROMIUM=1 to skip it.
set -euo pipefail

log() { echo "ensure_chromium: $*" >&2; }

if [[ "${RAYPIPE_SKIP_CHROMIUM:-}" == 1 ]] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi

hint="install Chromium yourself for the browser tests (apt-get install chromium); they skip without it"

if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here; $hint"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "need root (or password-less sudo) to apt-get install chromium; $hint"
  exit 0
fi

log "installing chromium (apt-get install -y chromium)"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq chromium >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
fi
command -v chromium >/dev/null 2>&1 || { log "chromium installed but not on PATH"; exit 1; }
log "$(chromium --version 2>&1)"
