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

if [[ "${RAYPIPE_SKIP_GRAPHVIZ:-}" == 1 ]] || command -v dot >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/ensure_debian_package.sh" ensure_graphviz dot graphviz \
  "install Graphviz yourself for 'raypipe graph -o svg|png' (apt-get install graphviz, \
brew install graphviz); -o dot works without it"
if command -v dot >/dev/null 2>&1; then
  echo "ensure_graphviz: $(dot -V 2>&1)" >&2
fi
