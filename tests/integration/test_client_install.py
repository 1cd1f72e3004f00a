"""The SDK and CLI installed alone, as a data scientist installs them against a shared server.

``pip install`` of clients/python into a fresh virtual environment (from a copy of the source,
so the build leaves nothing in the clone): ``import raypipe``, ``raypipe --help`` and calls to
a running control plane work (the SDK and the CLI), ``raypipe serve`` says which package it
needs, and none of the server's dependencies is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.server import ControlPlane, ServerConfig

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
#: What a client must never pull in: the server's execution, storage, tracking and ML stack.
SERVER_ONLY = {"ray", "torch", "sqlalchemy", "mlflow", "xgboost", "lightgbm", "catboost", "alembic"}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only ``pip install clients/python`` in it."""
    root = tmp_path_factory.mktemp("client")
    source = root / "src"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    assert (source / "raypipe" / "v1" / "run_pb2.py").exists(), "run `make proto` first"
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    plane = ControlPlane(
        ServerConfig(data_dir=tmp_path_factory.mktemp("plane"), port=0, enable_runs=False)
    )
    plane.start()
    yield f"127.0.0.1:{plane.port}"
    plane.stop(grace=1)


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=venv,  # not the clone: nothing of the repository is importable from here
    )


def test_the_client_installs_without_the_server(client_venv: Path) -> None:
    listed = _run(client_venv, "python", "-m", "pip", "list", "--format", "json")
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "raypipe" in names
    assert not names & SERVER_ONLY, sorted(names & SERVER_ONLY)
    imported = _run(
        client_venv,
        "python",
        "-c",
        "import raypipe, sys; raypipe.Client; from raypipe.v1 import run_pb2; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('control_plane', 'ray_nodes', 'ray')))",
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"


def test_the_client_calls_a_running_server(client_venv: Path, server: str) -> None:
    created = _run(client_venv, "raypipe", "--address", server, "pipelines", "create", "solo")
    assert created.returncode == 0, created.stderr
    listed = _run(client_venv, "raypipe", "--address", server, "pipelines", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)] == ["pipelines/solo"]
    sdk = _run(
        client_venv,
        "python",
        "-c",
        f"import raypipe; c = raypipe.Client({server!r}); "
        "print(c.get_pipeline('solo').name); c.close()",
    )
    assert sdk.returncode == 0, sdk.stderr
    assert sdk.stdout.strip() == "pipelines/solo"


def test_serve_names_the_package_it_needs(client_venv: Path) -> None:
    shown = _run(client_venv, "raypipe", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "serve" in shown.stdout
    for command in ("serve", "ray-env", "dashboard"):
        refused = _run(client_venv, "raypipe", command, "--port", "0")
        assert refused.returncode == 1
        assert f"raypipe {command} is a command of the raypipe server" in refused.stderr
        assert "pip install raypipe-server" in refused.stderr
