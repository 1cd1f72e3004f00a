"""Fixtures for the SDK and CLI tests: clients and a CLI runner on the real control plane.

Import the fixture functions into a test module (``from tests.integration.sdk_fixtures
import sdk_client_fixture  # noqa: F401``); their names (``sdk``, ``cli``, ...) are what tests
ask for. Runs need Ray: ``run_address`` uses the suite's ``run_plane`` fixture (a control
plane serving RunService on the session's Ray) and skips where the suite has none.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import raypipe
from control_plane.server import ControlPlane
from raypipe.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
NOOP_EXAMPLE = EXAMPLES / "noop.yaml"


@pytest.fixture(name="address")
def address_fixture(plane: ControlPlane) -> str:
    """``host:port`` of an in-process control plane serving pipelines (SQLite, PostgreSQL)."""
    return f"127.0.0.1:{plane.port}"


@pytest.fixture(name="sdk")
def sdk_client_fixture(address: str) -> Iterator[raypipe.Client]:
    with raypipe.Client(address, timeout=30) as client:
        yield client


@pytest.fixture(name="run_address")
def run_address_fixture(request: pytest.FixtureRequest) -> str:
    """A control plane that serves runs on the session's Ray; skipped where there is none."""
    try:
        plane = request.getfixturevalue("run_plane")
    except pytest.FixtureLookupError as e:  # run_plane, or the session Ray it needs
        pytest.skip(f"runs need a control plane on Ray; fixture {e.argname!r} is not defined")
    return f"127.0.0.1:{plane.port}"


@pytest.fixture(name="run_sdk")
def run_sdk_fixture(run_address: str) -> Iterator[raypipe.Client]:
    with raypipe.Client(run_address, timeout=60) as client:
        yield client


@dataclass
class Cli:
    """Runs ``raypipe`` commands in-process against one control plane."""

    address: str

    def __call__(self, command: str | list[str], *, env: dict[str, str] | None = None) -> Result:
        args = shlex.split(command) if isinstance(command, str) else command
        runner = CliRunner()
        return runner.invoke(
            main, ["--address", self.address, *args], env=env, catch_exceptions=False
        )


@pytest.fixture(name="cli")
def cli_fixture(address: str) -> Cli:
    return Cli(address)


@pytest.fixture(name="run_cli")
def run_cli_fixture(run_address: str) -> Cli:
    return Cli(run_address)


@pytest.fixture(name="write_spec")
def write_spec_fixture(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a pipeline file into the test's directory: ``write_spec("a.yaml", text)``."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
