"""A one-time link that opens a local Ray head's dashboard signed in.

The embedded head runs with token authentication (see :mod:`ray_nodes.cluster`), so its
dashboard first asks for a token. Ray's dashboard accepts the token as the cookie
``ray-authentication-token`` (the one its own sign-in dialog sets through
``POST /api/authenticate``). Cookies are scoped to a host, not to a port (RFC 6265, section
8.5), so a page on another port of the same host can set that cookie for the dashboard.

:class:`DashboardLogin` serves exactly that page, on a free port of the dashboard's own
loopback host: ``GET /login/{code}`` with the right one-time code sets the cookie (HttpOnly,
SameSite=Strict, for as long as Ray's own dialog keeps it) and redirects to the dashboard.
The code is random (128 bits), compared in constant time, valid once and for a limited time,
and nothing else is served; the token itself never appears in a URL, a page or a log. Only a
dashboard on a loopback address can be signed into this way: a cookie set by a page on this
machine does not reach a dashboard on another one.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["COOKIE_MAX_AGE_S", "COOKIE_NAME", "DashboardLogin"]

try:  # the names Ray's dashboard itself uses
    from ray._private.authentication.authentication_constants import (
        AUTHENTICATION_TOKEN_COOKIE_MAX_AGE as COOKIE_MAX_AGE_S,
    )
    from ray._private.authentication.authentication_constants import (
        AUTHENTICATION_TOKEN_COOKIE_NAME as COOKIE_NAME,
    )
except ImportError:  # pragma: no cover - a Ray without token authentication
    COOKIE_NAME = "ray-authentication-token"
    COOKIE_MAX_AGE_S = 30 * 24 * 60 * 60

_LOOPBACK = ("127.0.0.1", "localhost")


class DashboardLogin:
    """Serves one sign-in to the dashboard at ``dashboard_url`` (see the module docstring).

    Args:
        dashboard_url: ``http://127.0.0.1:PORT`` of the dashboard.
        token_path: The head's token file.
        valid_for_s: How long the link works, in seconds.

    Raises:
        ValueError: the dashboard is not on a loopback address.
        OSError: the token file cannot be read, or no port can be bound.
    """

    def __init__(self, dashboard_url: str, token_path: Path, *, valid_for_s: float = 300) -> None:
        parts = urlsplit(dashboard_url)
        if parts.scheme != "http" or parts.hostname not in _LOOPBACK:
            raise ValueError(
                f"the dashboard at {dashboard_url} is not on this machine's loopback address: "
                f"sign in with the token in {token_path} in its own dialog"
            )
        self.dashboard_url = dashboard_url.rstrip("/") + "/"
        self._token = Path(token_path).read_text().strip()
        if not self._token:
            raise OSError(f"the token file {token_path} is empty")
        self._code = secrets.token_urlsafe(16)
        self._expires = time.monotonic() + valid_for_s
        self._used = threading.Event()
        host = parts.hostname or "127.0.0.1"
        self._server = http.server.ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_port}/login/{self._code}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dashboard-login", daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the link was used (True) or it expired or ``timeout`` passed (False)."""
        limit = max(0.0, self._expires - time.monotonic())
        return self._used.wait(limit if timeout is None else min(timeout, limit))

    def close(self) -> None:
        """Stop serving (the link stops working)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DashboardLogin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accept(self, path: str) -> bool:
        """Whether ``path`` is the valid, unused, unexpired link; marks it used."""
        code = path.removeprefix("/login/") if path.startswith("/login/") else ""
        if not secrets.compare_digest(code.encode(), self._code.encode()):
            return False
        if self._used.is_set() or time.monotonic() > self._expires:
            return False
        self._used.set()
        return True

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        login = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not login._accept(urlsplit(self.path).path):
                    self._plain(
                        HTTPStatus.NOT_FOUND,
                        "This sign-in link is unknown, used or expired: run `raypipe dashboard` "
                        "again for a new one.\n",
                    )
                    return
                self.send_response(HTTPStatus.FOUND)
                self.send_header(
                    "Set-Cookie",
                    f"{COOKIE_NAME}={login._token}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; "
                    "HttpOnly; SameSite=Strict",
                )
                self.send_header("Location", login.dashboard_url)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _plain(self, status: HTTPStatus, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the path holds the one-time code: keep it out of every log

        return Handler
