"""Getting into the local Ray head of `raypipe serve` as its printed instructions say.

A real `raypipe serve` starts its own head (token authentication on). The one line it prints
names two commands: `raypipe ray-env`, whose exports make Ray's own CLI work (`ray status`,
`ray list tasks` shows a run's nodes as `pipeline/node` tasks) and give an HTTP client the token
for the dashboard's `/api/...` endpoints; and `raypipe dashboard`, whose one-time link signs a
real headless Chromium into the dashboard (which, without it, shows its token dialog).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import raypipe
from ray_nodes.cluster import DASHBOARD_PORT
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.integration.conftest import ServerProcess, ray_free_env

RAY = str(Path(sys.executable).with_name("ray"))
TOKEN_DIALOG = "Authentication Token Required"


@dataclass(frozen=True)
class Served:
    server: ServerProcess
    hint: str
    dashboard: str
    port_was_free: bool


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`raypipe serve` with a local head of its own, stopped with it."""
    data = tmp_path_factory.mktemp("served") / "data"
    server = ServerProcess(data, "--stop-ray-on-exit", "--no-mlflow-tracking", own_ray=True)
    free = _port_free(DASHBOARD_PORT)
    server.start(timeout=120)
    try:
        assert server.proc is not None
        assert server.proc.stdout is not None
        hint = server.proc.stdout.readline().strip()
        yield Served(server, hint, server.dashboard, free)
    finally:
        assert server.terminate(timeout=60) == 0


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "raypipe.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ray_free_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _exports(text: str) -> tuple[dict[str, str], list[str]]:
    """What ``eval "$(raypipe ray-env)"`` sets and unsets."""
    set_, unset = {}, []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            key, _, value = words[1].partition("=")
            set_[key] = value
        elif words[:1] == ["unset"]:
            unset.extend(words[1:])
    return set_, unset


def _ray_env(served: Served) -> dict[str, str]:
    exported, unset = _exports(_cli("ray-env", "--data-dir", str(served.server.data_dir)))
    env = {k: v for k, v in ray_free_env().items() if k not in unset}
    env.update(exported)
    return env


def test_serve_prints_how_to_get_in_on_the_conventional_port(served: Served) -> None:
    data = served.server.data_dir
    assert f"raypipe dashboard --data-dir {data}" in served.hint
    assert f'eval "$(raypipe ray-env --data-dir {data})"' in served.hint
    port = int(served.dashboard.rsplit(":", 1)[1])
    assert served.dashboard.startswith("http://127.0.0.1:")
    # 8265 when it was free; another port (and still a dashboard) when it was not.
    assert (port == DASHBOARD_PORT) == served.port_was_free


def test_ray_env_gives_ray_cli_and_http_clients_the_head(served: Served) -> None:
    env = _ray_env(served)
    token_path = served.server.data_dir / "ray" / "auth_token"
    assert env["RAY_AUTH_MODE"] == "token"
    assert Path(env["RAY_AUTH_TOKEN_PATH"]) == token_path.resolve()
    assert "RAY_AUTH_TOKEN" not in env

    with raypipe.Client(served.server.address, timeout=60) as client:
        spec = raypipe.Pipeline("dash")
        spec.add("first", "noop")
        spec.add("second", "noop")
        client.apply(spec)
        run = client.run("dash").wait(timeout=120)  # raises unless it succeeded
    assert len(run.nodes) == 2

    status = subprocess.run(
        [RAY, "status"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0, status.stderr
    assert "Active:" in status.stdout
    assert "node_" in status.stdout
    listed = subprocess.run(
        [RAY, "list", "tasks", "--format", "json", "--limit", "1000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    names = {task["name"] for task in json.loads(listed.stdout)}
    assert {"dash/first", "dash/second"} <= names

    token = token_path.read_text().strip()
    for path in ("/api/v0/tasks?limit=10", "/nodes?view=summary"):
        url = served.dashboard + path
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            json.loads(response.read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)  # without the token
        assert refused.value.code == 401


def test_ray_env_without_a_head_says_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "raypipe.cli", "ray-env", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ray_free_env(),
        check=False,
    )
    assert done.returncode == 1
    assert f"no Ray head runs for {tmp_path}" in done.stderr
    assert "raypipe serve --data-dir" in done.stderr


def test_dashboard_link_signs_a_real_browser_in(served: Served) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = chromium_path()
    command = [
        sys.executable,
        "-m",
        "raypipe.cli",
        "dashboard",
        "--data-dir",
        str(served.server.data_dir),
        "--no-open",
        "--valid-for",
        "120",
    ]
    login = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=ray_free_env())
    try:
        assert login.stdout is not None
        assert login.stdout.readline().strip() == f"Ray dashboard: {served.dashboard}"
        match = re.search(r"(http://127\.0\.0\.1:\d+/login/\S+)", login.stdout.readline())
        assert match, "no sign-in link printed"
        link = match.group(1)
        assert served.server.data_dir.joinpath("ray", "auth_token").read_text() not in link

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                # Without the link: the dashboard asks for its token.
                stranger = browser.new_context().new_page()
                stranger.goto(served.dashboard)
                expect(stranger.get_by_text(TOKEN_DIALOG)).to_be_visible(timeout=30_000)

                page = browser.new_context().new_page()
                page.goto(link)
                assert page.url.rstrip("/") == served.dashboard
                # The overview fills in from authenticated API calls: the head's node is listed.
                expect(page.get_by_text("Node Status")).to_be_visible(timeout=30_000)
                expect(page.get_by_text(re.compile(r"node_[0-9a-f]{16}"))).to_be_visible(
                    timeout=30_000
                )
                expect(page.get_by_text(TOKEN_DIALOG)).to_have_count(0)
                cookies = {c["name"]: c for c in page.context.cookies()}
                cookie = cookies["ray-authentication-token"]
                assert cookie["httpOnly"]
                assert cookie["sameSite"] == "Strict"
            finally:
                browser.close()
        assert login.wait(timeout=30) == 0  # used: the command ends, and the link with it
    finally:
        if login.poll() is None:
            login.kill()
            login.wait()
