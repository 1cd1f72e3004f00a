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

if [[ "${RAYPIPE_SKIP_CHROMIUM:-}" == 1 ]] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/ensure_debian_package.sh" ensure_chromium chromium chromium \
  "install Chromium yourself for the browser tests (apt-get install chromium); they skip without it"
if command -v chromium >/dev/null 2>&1; then
  echo "ensure_chromium: $(chromium --version 2>&1)" >&2
fi
