"""The web UI's built files (``clients/web``, built by ``make install`` into
``clients/web/dist``) on the HTTP port, beside the Connect services (docs/http.md).

A single-page application: ``/assets/`` holds Vite's content-hashed bundles, cached for good;
every other path that is not a file (``/``, ``/runs/{id}``, ``/builder``...) is a deep link the
browser-side router resolves, so it gets ``index.html``, which is never cached without a check.
A UI directory without ``index.html`` (the UI not built) answers 503 with a page saying so.

Paths are resolved and checked to stay inside the UI directory (``..``, encoded or not, and
symbolic links out of it serve nothing). Compressible files go out gzip-compressed to clients
that accept it, compressed once per file version (path, mtime, size) and kept in memory.
"""

from __future__ import annotations

import gzip
import json
import mimetypes
import posixpath
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Where ``make install`` builds the web UI: clients/web/dist of the repository this package
#: lives in (the server is installed editable). ``raypipe serve --ui-dir`` serves another.
DEFAULT_UI_DIR = Path(__file__).resolve().parent.parent / "clients" / "web" / "dist"

ASSETS = "/assets/"
#: What the UI asks the server about its deployment: ``{"rayDashboardUrl": ...}``, for links
#: from a node to its Ray task.
CONFIG_PATH = "/ui-config.json"
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".html", ".svg", ".json", ".map", ".txt"})
#: What mimetypes may not know on every system.
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".woff2": "font/woff2",
    ".webmanifest": "application/manifest+json",
}

NOT_BUILT = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raypipe: web UI not built</title></head>
<body><h1>The web UI is not built</h1>
<p>This server found no built web UI (no <code>index.html</code> in its UI directory). Run
<code>make install</code> in the repository (it builds <code>clients/web</code> into
<code>clients/web/dist</code>), or start the server with <code>raypipe serve --ui-dir DIR</code>.
The HTTP API (Connect) on this port works without it.</p></body></html>
"""

StartResponse = Callable[..., Any]


def content_type(path: Path) -> str:
    """The Content-Type of a file, by its suffix; text with ``charset=utf-8``."""
    kind = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    kind = kind or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip`` or ``*``, q above 0)."""
    accepted: dict[str, float] = {}
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        accepted[coding.strip().lower()] = q
    return accepted.get("gzip", accepted.get("*", 0.0)) > 0


class StaticUi:
    """A WSGI application serving the web UI's built files from ``root``, GET and HEAD only."""

    def __init__(self, root: Path, config: Callable[[], dict[str, Any]] | None = None) -> None:
        self.root = root
        self._config = config or dict
        self._lock = threading.Lock()
        self._gzipped: dict[Path, tuple[tuple[int, int], bytes]] = {}  # path -> (version, body)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            text = f"{method} is not served here: the web UI takes GET and HEAD\n"
            return _plain(start_response, "405 Method Not Allowed", text, [("Allow", "GET, HEAD")])
        # PATH_INFO is percent-decoded already (%2e%2e is ..), as latin-1 (PEP 3333): back to
        # its UTF-8 text.
        raw = environ.get("PATH_INFO", "") or "/"
        path = raw.encode("latin-1").decode("utf-8", "replace")
        if path == CONFIG_PATH:
            return self._send_config(start_response, method)
        if "\0" in path or ".." in path.replace("\\", "/").split("/"):
            return _plain(start_response, "404 Not Found", "no file at that path\n")
        found = self._file(path)
        if found is not None:
            return self._send(environ, start_response, found, method)
        if path.startswith(ASSETS):
            return _plain(start_response, "404 Not Found", f"no file at {path}\n")
        index = self._file("/index.html")
        if index is None:  # the SPA's deep links, but no SPA
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                ("Content-Length", str(len(NOT_BUILT))),
            ]
            start_response("503 Service Unavailable", headers)
            return [] if method == "HEAD" else [NOT_BUILT]
        return self._send(environ, start_response, index, method)

    def _send_config(self, start_response: StartResponse, method: str) -> Iterable[bytes]:
        body = json.dumps(self._config(), sort_keys=True).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-cache"),
            ("Content-Length", str(len(body))),
        ]
        start_response("200 OK", headers)
        return [] if method == "HEAD" else [body]

    def _file(self, path: str) -> Path | None:
        """The regular file ``path`` names inside the UI directory, or None: a name that
        leaves the directory, by ``..`` or by a link, names nothing."""
        if "\0" in path:
            return None
        relative = posixpath.normpath("/" + path).lstrip("/")
        if relative in ("", "."):
            return None
        try:
            root = self.root.resolve()
            candidate = (root / relative).resolve()
        except (OSError, RuntimeError):
            return None
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def _send(
        self, environ: dict[str, Any], start_response: StartResponse, file: Path, method: str
    ) -> Iterable[bytes]:
        try:
            stat = file.stat()
            body = file.read_bytes()
        except OSError:
            return _plain(start_response, "404 Not Found", "no such file\n")
        headers = [("Content-Type", content_type(file))]
        immutable = file.relative_to(self.root.resolve()).parts[0] == ASSETS.strip("/")
        headers.append(("Cache-Control", IMMUTABLE if immutable else "no-cache"))
        if file.suffix.lower() in COMPRESSIBLE:
            headers.append(("Vary", "Accept-Encoding"))
            if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
                body = self._gzip(file, (stat.st_mtime_ns, stat.st_size), body)
                headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [] if method == "HEAD" else [body]

    def _gzip(self, file: Path, version: tuple[int, int], body: bytes) -> bytes:
        """``body`` compressed, once per version of ``file``."""
        with self._lock:
            cached = self._gzipped.get(file)
        if cached is not None and cached[0] == version:
            return cached[1]
        compressed = gzip.compress(body, compresslevel=9, mtime=0)
        with self._lock:
            self._gzipped[file] = (version, compressed)
        return compressed


def _plain(
    start_response: StartResponse,
    status: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]
