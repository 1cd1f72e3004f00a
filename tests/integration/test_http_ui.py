"""The web UI on the HTTP port: `raypipe serve --ui-dir DIR` serves DIR's built files beside
the Connect services; deep links get index.html, /assets/ is cached for good and gzipped on
request, nothing outside DIR is ever served, and a DIR without index.html answers 503 with
the way to build it while Connect keeps working."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ray_nodes.cluster import LocalHead
from tests.integration.conftest import ServerProcess

INDEX = (
    b'<!doctype html><html><body><div id="root"></div>'
    b'<script type="module" src="/assets/app-abc123.js"></script></body></html>\n'
)
APP_JS = b"export const greeting = 'hello from the web UI';\n" * 200
DEEP_LINKS = [
    "/",
    "/pipelines",
    "/pipelines/cancer-xgb",
    "/pipelines/cancer-xgb/versions/3",
    "/runs",
    "/runs/0123456789abcdef",
    "/schedules",
    "/schedules/nightly",
    "/builder",
]


Response = tuple[int, dict[str, str], bytes]


def request(
    base: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request with the path sent exactly as given (http.client does not normalize
    ``..`` or percent escapes); the status, the headers (lowercase names) and the raw body."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def start(tmp: Path, ray_head: LocalHead, ui_dir: Path) -> ServerProcess:
    server = ServerProcess(
        tmp / "data",
        "--ray-address",
        ray_head.address,
        "--no-mlflow-tracking",
        "--ui-dir",
        str(ui_dir),
        env=ray_head.client_env(),
    )
    server.start()
    return server


def stop(server: ServerProcess) -> None:
    if server.proc is not None and server.proc.poll() is None:
        assert server.terminate(timeout=60) == 0


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead
) -> Iterator[ServerProcess]:
    """`raypipe serve` with a small built UI: index.html and one hashed asset."""
    tmp = tmp_path_factory.mktemp("ui")
    ui = tmp / "dist"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_bytes(INDEX)
    (ui / "assets" / "app-abc123.js").write_bytes(APP_JS)
    (tmp / "secret.txt").write_text("outside the UI directory\n")  # beside dist/, never served
    server = start(tmp, ray_head, ui)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def unbuilt(
    tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead
) -> Iterator[ServerProcess]:
    """`raypipe serve` whose UI directory is empty (the UI not built)."""
    tmp = tmp_path_factory.mktemp("unbuilt")
    (tmp / "dist").mkdir()
    server = start(tmp, ray_head, tmp / "dist")
    yield server
    stop(server)


def test_serve_prints_the_web_ui_url(served: ServerProcess) -> None:
    assert served.http_address.startswith("http://127.0.0.1:")
    assert served.web_ui == served.http_address + "/"


def test_deep_links_get_index_html(served: ServerProcess) -> None:
    for path in DEEP_LINKS:
        status, headers, body = request(served.http_address, path)
        assert (status, body) == (200, INDEX), path
        assert headers["content-type"].startswith("text/html"), path
        assert headers["cache-control"] == "no-cache", path
    status, headers, body = request(served.http_address, "/runs/0123456789abcdef", method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(INDEX))


def test_assets_are_typed_immutable_and_gzipped_on_request(served: ServerProcess) -> None:
    path = "/assets/app-abc123.js"
    status, headers, body = request(served.http_address, path)
    assert (status, body) == (200, APP_JS)
    assert headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    for _ in range(2):  # compressed once, then from memory: the same bytes
        status, headers, body = request(
            served.http_address, path, headers={"Accept-Encoding": "gzip, deflate"}
        )
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert headers["vary"] == "Accept-Encoding"
        assert int(headers["content-length"]) == len(body) < len(APP_JS)
        assert gzip.decompress(body) == APP_JS
    status, headers, body = request(
        served.http_address, path, headers={"Accept-Encoding": "gzip;q=0"}
    )
    assert (status, body) == (200, APP_JS)
    assert "content-encoding" not in headers


def test_a_missing_asset_is_a_404(served: ServerProcess) -> None:
    status, _, body = request(served.http_address, "/assets/app-nope.js")
    assert status == 404
    assert INDEX not in body


def test_paths_never_leave_the_ui_directory(served: ServerProcess) -> None:
    for path in (
        "/assets/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/assets/..%2f..%2fsecret.txt",
    ):
        status, _, body = request(served.http_address, path)
        assert status in (200, 404), path
        assert status == 404 or body == INDEX, path
        assert b"root:" not in body, path
        assert b"outside the UI directory" not in body, path


def test_connect_calls_still_work(served: ServerProcess) -> None:
    status, headers, body = request(
        served.http_address,
        "/raypipe.v1.PipelineService/ListNodeTypes",
        method="POST",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body
    assert {"noop", "model_trainer"} <= {t["type"] for t in json.loads(body)["nodeTypes"]}
    status, _, body = request(
        served.http_address, "/raypipe.v1.NoSuchService/Get", method="POST", body=b"{}"
    )
    assert status == 404
    assert body.startswith(b"no service at /raypipe.v1.NoSuchService/Get")
    status, headers, _ = request(served.http_address, "/runs", method="POST", body=b"{}")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


def test_an_unbuilt_ui_is_a_503_with_the_way_to_build_it(unbuilt: ServerProcess) -> None:
    for path in ("/", "/runs/0123456789abcdef"):
        status, headers, body = request(unbuilt.http_address, path)
        assert status == 503, path
        assert headers["content-type"].startswith("text/html"), path
        assert b"make install" in body, path
    status, _, _ = request(unbuilt.http_address, "/assets/app-abc123.js")
    assert status == 404
    status, _, body = request(
        unbuilt.http_address,
        "/grpc.health.v1.Health/Check",
        method="POST",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert (status, json.loads(body)) == (200, {"status": "SERVING"})


def test_ui_config_names_the_ray_dashboard(served: ServerProcess, ray_head: LocalHead) -> None:
    # The UI links a node to its Ray task in the dashboard of the cluster the server uses.
    status, headers, body = request(served.http_address, "/ui-config.json")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"rayDashboardUrl": ray_head.dashboard_url, "authRequired": False}
