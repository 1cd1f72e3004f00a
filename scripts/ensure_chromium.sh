#!/usr/bin/env bash
# Ensure Debian's Chromium is installed, for the tests that drive a real browser (Playwright,
# with executable_path /usr/bin/chromium: Playwright's own browser download cannot be used).
#
#   bash scripts/ensure_chromium.sh
#
# `make test` runs it first. It installs the `chromium` package when `chromium` is missing, as
# root or through password-less sudo, and fails (exit 1, saying what to do) when it cannot:
# the browser tests need it and are not skipped. Idempotent: with `chromium` on PATH it does
# nothing.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  bash "$(dirname "$0")/ensure_debian_package.sh" ensure_chromium chromium chromium \
    "install Chromium yourself (apt-get install chromium): the browser tests need it"
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure_chromium: chromium is not installed; the browser tests cannot run" >&2
  exit 1
fi
echo "ensure_chromium: $(chromium --version 2>/dev/null)" >&2
