#!/usr/bin/env bash
# Ensure Graphviz's `dot` is installed, so that `raypipe graph -o svg|png` can render.
#
#   bash scripts/ensure_graphviz.sh
#
# On Debian/Ubuntu it installs the `graphviz` package when `dot` is missing, as root or
# through password-less sudo. Anywhere else (no apt-get, no root) it prints how to install it
# and exits 0: only `raypipe graph -o svg|png` needs it (`-o dot` needs nothing), and the
# tests of those check the clear error instead. Idempotent: with `dot` on PATH it does
# nothing. Set RAYPIPE_SKIP_GRAPHVIZ=1 to skip it.
set -euo pipefail

log() { echo "ensure_graphviz: $*" >&2; }

if [[ "${RAYPIPE_SKIP_GRAPHVIZ:-}" == 1 ]] || command -v dot >/dev/null 2>&1; then
  exit 0
fi

hint="install Graphviz yourself for 'raypipe graph -o svg|png' (apt-get install graphviz, \
brew install graphviz); -o dot works without it"

if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here; $hint"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  log "need root (or password-less sudo) to apt-get install graphviz; $hint"
  exit 0
fi

log "installing graphviz (apt-get install -y graphviz)"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq graphviz >/dev/null; then
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq graphviz >/dev/null
fi
command -v dot >/dev/null 2>&1 || { log "graphviz installed but no dot on PATH"; exit 1; }
log "$(dot -V 2>&1)"
