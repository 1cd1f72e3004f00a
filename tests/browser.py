"""Headless Chromium for the tests and benchmarks that drive a real browser: Debian's
``chromium`` package (``make test`` installs it through scripts/ensure_chromium.sh), driven by
Playwright for Python with no browser download."""

from __future__ import annotations

import shutil

from playwright.sync_api import ViewportSize

#: Flags for a browser in a container: no sandbox, no GPU, nothing that reaches the network
#: on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The viewport the UI is built for (and its tests and screenshots use).
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def chromium_path() -> str:
    """Debian's chromium; an AssertionError saying how to get it when it is missing."""
    path = shutil.which("chromium")
    assert path is not None, "chromium is missing: `make test` installs it (ensure_chromium.sh)"
    return path
