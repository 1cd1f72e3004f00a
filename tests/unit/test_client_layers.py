"""The TypeScript and Go clients' own unit tests (node --test, go test), run here so that
`make test` fails when they do. `make clients` builds them first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TS_TESTS = ROOT / "clients" / "typescript" / "build" / "test"
GOPATH = ROOT / ".venv" / "gopath"
GO_PACKAGE = GOPATH / "src" / "github.com" / "raypipe" / "raypipe" / "clients" / "go"


def test_typescript_layer() -> None:
    if not TS_TESTS.is_dir():
        pytest.fail(f"{TS_TESTS} is missing: run `make clients`")
    done = subprocess.run(
        ["node", "--test", str(TS_TESTS)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout, done.stdout
    assert "# pass 0" not in done.stdout, done.stdout


def test_go_layer() -> None:
    if shutil.which("go") is None or not GO_PACKAGE.is_dir():
        pytest.fail("Go or the client's GOPATH is missing: run `make clients`")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{GOPATH}:/usr/share/gocode",
        "GOFLAGS": "-count=1",
    }
    done = subprocess.run(
        ["go", "test", "-v", "./raypipe/"],
        cwd=GO_PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--- PASS: TestWaitRunReconnectsAfterUnavailable" in done.stdout, done.stdout
    assert "--- FAIL" not in done.stdout
