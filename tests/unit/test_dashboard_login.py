"""The dashboard's one-time sign-in link, against a real HTTP client (no Ray needed): the right
code sets Ray's token cookie and redirects, once; a wrong, reused or expired code gets 404
and no cookie; only loopback dashboards are accepted."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ray_nodes.dashboard_login import COOKIE_NAME, DashboardLogin

TOKEN = "0123456789abcdef" * 4


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth_token"
    path.write_text(TOKEN + "\n")
    return path


def _get(url: str) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_the_link_sets_the_cookie_and_redirects_once(token_file: Path) -> None:
    with DashboardLogin("http://127.0.0.1:8265", token_file) as login:
        assert TOKEN not in login.url
        assert not login.wait(timeout=0.01)
        first = _get(login.url)
        assert first.status == 302
        assert first.getheader("Location") == "http://127.0.0.1:8265/"
        cookie = first.getheader("Set-Cookie") or ""
        assert cookie.startswith(f"{COOKIE_NAME}={TOKEN}; Path=/; ")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert login.wait(timeout=1)
        again = _get(login.url)
        assert again.status == 404
        assert again.getheader("Set-Cookie") is None


@pytest.mark.parametrize("suffix", ["x", "/../", ""])
def test_a_wrong_code_gets_nothing(token_file: Path, suffix: str) -> None:
    with DashboardLogin("http://127.0.0.1:8265", token_file) as login:
        wrong = login.url[:-1] + suffix if suffix else login.url.rsplit("/", 1)[0] + "/"
        response = _get(wrong)
        assert response.status == 404
        assert response.getheader("Set-Cookie") is None
        assert not login.wait(timeout=0.01)
        assert _get(login.url).status == 302  # the right one still works


def test_an_expired_link_gets_nothing(token_file: Path) -> None:
    with DashboardLogin("http://127.0.0.1:8265", token_file, valid_for_s=0.2) as login:
        time.sleep(0.3)
        response = _get(login.url)
        assert response.status == 404
        assert response.getheader("Set-Cookie") is None
        assert not login.wait()


@pytest.mark.parametrize("url", ["http://10.1.2.3:8265", "https://127.0.0.1:8265"])
def test_only_a_loopback_http_dashboard_can_be_signed_into(token_file: Path, url: str) -> None:
    with pytest.raises(ValueError, match="its own dialog"):
        DashboardLogin(url, token_file)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "auth_token"
    empty.write_text("")
    with pytest.raises(OSError, match="is empty"):
        DashboardLogin("http://127.0.0.1:8265", empty)
