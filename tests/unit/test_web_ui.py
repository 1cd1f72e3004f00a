"""control_plane.web_ui.StaticUi called as WSGI: what a server cannot be asked through an
HTTP client that normalizes paths (links out of the UI directory, a rebuilt file's gzip)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from control_plane.web_ui import StaticUi, accepts_gzip, content_type


def call(
    ui: StaticUi, path: str, method: str = "GET", **headers: str
) -> tuple[str, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(response_headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path.encode().decode("latin-1")}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    body = b"".join(ui(environ, start_response))
    return seen["status"], seen["headers"], body


@pytest.fixture
def ui(tmp_path: Path) -> StaticUi:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><p>index</p>\n")
    (dist / "assets" / "app-1.css").write_text("body { color: red; }\n" * 50)
    (dist / "logo.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    return StaticUi(dist)


def test_links_out_of_the_ui_directory_serve_nothing(ui: StaticUi, tmp_path: Path) -> None:
    (ui.root / "assets" / "out.txt").symlink_to(tmp_path / "secret.txt")
    (ui.root / "out").symlink_to(tmp_path)
    status, _, body = call(ui, "/assets/out.txt")
    assert status.startswith("404")
    assert b"secret" not in body
    status, _, body = call(ui, "/out/secret.txt")
    assert status.startswith("200")
    assert body == (ui.root / "index.html").read_bytes()  # a deep link, not the file
    for path in ("/../secret.txt", "/assets/../../secret.txt", "/x/../../secret.txt", "/a\0b"):
        status, _, body = call(ui, path)
        assert status.startswith("404"), path
        assert b"secret" not in body, path


def test_a_rebuilt_file_is_compressed_again(ui: StaticUi) -> None:
    css = ui.root / "assets" / "app-1.css"
    _, headers, body = call(ui, "/assets/app-1.css", accept_encoding="gzip")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == css.read_bytes()
    css.write_text("body { color: blue; }\n" * 50)
    stat = css.stat()
    os.utime(css, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    _, _, body = call(ui, "/assets/app-1.css", accept_encoding="gzip")
    assert gzip.decompress(body) == css.read_bytes()


def test_only_compressible_files_are_gzipped_and_only_get_and_head_are_served(
    ui: StaticUi,
) -> None:
    status, headers, body = call(ui, "/logo.png", accept_encoding="gzip")
    assert status.startswith("200")
    assert (headers["Content-Type"], body) == ("image/png", b"\x89PNG\r\n")
    assert "Content-Encoding" not in headers
    assert "Vary" not in headers
    assert headers["Cache-Control"] == "no-cache"
    status, headers, body = call(ui, "/index.html", method="HEAD")
    assert status.startswith("200")
    assert body == b""
    assert int(headers["Content-Length"]) == (ui.root / "index.html").stat().st_size
    status, headers, _ = call(ui, "/", method="DELETE")
    assert status.startswith("405")
    assert headers["Allow"] == "GET, HEAD"


def test_accept_encoding_and_content_types() -> None:
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("br;q=1.0, gzip;q=0.8")
    assert accepts_gzip("*")
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0, *")
    assert not accepts_gzip("*;q=0")
    assert content_type(Path("a.js")) == "text/javascript; charset=utf-8"
    assert content_type(Path("a.css")) == "text/css; charset=utf-8"
    assert content_type(Path("a.svg")) == "image/svg+xml; charset=utf-8"
    assert content_type(Path("a.woff2")) == "font/woff2"
    assert content_type(Path("a.unknown-kind")) == "application/octet-stream"
