"""Fixtures for integration tests: a real control plane on a real port, real storage."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from control_plane.server import ControlPlane, ServerConfig
from raypipe.v1 import pipeline_service_pb2_grpc, run_service_pb2_grpc, schedule_service_pb2_grpc

if TYPE_CHECKING:
    from ray_nodes.cluster import LocalHead


@dataclass
class Api:
    """Stubs of every service on one channel."""

    channel: grpc.Channel
    pipelines: pipeline_service_pb2_grpc.PipelineServiceStub
    runs: run_service_pb2_grpc.RunServiceStub
    schedules: schedule_service_pb2_grpc.ScheduleServiceStub

    @classmethod
    def connect(cls, address: str) -> Api:
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=30)
        return cls(
            channel=channel,
            pipelines=pipeline_service_pb2_grpc.PipelineServiceStub(channel),
            runs=run_service_pb2_grpc.RunServiceStub(channel),
            schedules=schedule_service_pb2_grpc.ScheduleServiceStub(channel),
        )


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call carried: its code, message, ErrorInfo (reason, domain, metadata) and
    field violations."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    violations: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """Unpack the google.rpc.Status a raypipe server attaches to every error."""
    status = rpc_status.from_call(exc)
    assert status is not None, f"no rich status on {exc!r}"
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for v in bad.field_violations:
                violations[v.field] = v.description
    return ErrorDetails(exc.code(), status.message, reason, domain, violations, metadata)


def expect_error(
    call: Callable[[Any], object], request: Message, code: grpc.StatusCode
) -> ErrorDetails:
    """Make a call that must fail with ``code``; return the unpacked details."""
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    details = error_details(info.value)
    assert details.code == code, f"expected {code}, got {details.code}: {details.message}"
    assert details.domain == "raypipe.dev"
    assert details.reason, "every error carries an ErrorInfo reason"
    return details


@pytest.fixture
def plane(tmp_path: Path, db_url: str) -> Iterator[ControlPlane]:
    """An in-process control plane on a free port, on SQLite and on PostgreSQL, serving
    pipelines only (tests of runs use `run_plane`, which connects to the session's Ray)."""
    cp = ControlPlane(
        ServerConfig(data_dir=tmp_path / "data", port=0, db_url=db_url, enable_runs=False)
    )
    cp.start()
    yield cp
    cp.stop(grace=1)


@pytest.fixture
def run_plane(tmp_path: Path, ray_head: LocalHead) -> Iterator[ControlPlane]:
    """An in-process control plane serving runs on the session's Ray cluster (SQLite)."""
    cp = ControlPlane(
        ServerConfig(
            data_dir=tmp_path / "data",
            port=0,
            ray_address=ray_head.address,
            data_roots=(tmp_path,),
        )
    )
    cp.start()
    yield cp
    cp.stop(grace=1)


@pytest.fixture
def run_api(run_plane: ControlPlane) -> Iterator[Api]:
    a = Api.connect(f"127.0.0.1:{run_plane.port}")
    yield a
    a.channel.close()


@pytest.fixture
def api(plane: ControlPlane) -> Iterator[Api]:
    a = Api.connect(f"127.0.0.1:{plane.port}")
    yield a
    a.channel.close()


#: The variables that tie a process to one Ray cluster.
RAY_CONNECTION_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def ray_free_env() -> dict[str, str]:
    """This process's environment without its Ray connection (the session head's)."""
    return {k: v for k, v in os.environ.items() if k not in RAY_CONNECTION_VARS}


def run_driver(env: dict[str, str], script: str) -> str:
    """Run ``script`` as a Ray driver of the cluster that ``env`` (its connection variables)
    names, in a process of its own so that this one's Ray set-up stays as it is; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**ray_free_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def live_ray_nodes(env: dict[str, str]) -> list[dict[str, Any]]:
    """The live nodes of the cluster that ``env`` names, as Ray lists them: ``id``,
    ``address`` and ``resources`` of each."""
    script = (
        "import json, ray; ray.init(log_to_driver=False); "
        "print(json.dumps([{'id': n['NodeID'], 'address': n['NodeManagerAddress'], "
        "'resources': n['Resources']} for n in ray.nodes() if n['Alive']]))"
    )
    return list(json.loads(run_driver(env, script).strip().splitlines()[-1]))


class ServerProcess:
    """``raypipe serve`` as a real child process, for restart and kill -9 tests."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        own_ray: bool = False,
    ) -> None:
        """``extra`` goes on the command line after ``serve``; ``env`` on top of this process's
        environment, less this process's Ray connection (``RAY_ADDRESS``, ``RAY_AUTH_*``,
        set up for the session's head) when ``own_ray``, for a server that starts its own."""
        self.data_dir = data_dir
        self.extra = extra
        self.env = env or {}
        self.own_ray = own_ray
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.dashboard = ""
        self.http_address = ""
        self.web_ui = ""
        self.log = data_dir.parent / "server.log"

    def start(self, timeout: float = 60) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "raypipe.cli",
                    "serve",
                    "--port",
                    "0",
                    "--data-dir",
                    str(self.data_dir),
                    *(() if "--http-port" in self.extra else ("--http-port", "0")),
                    *self.extra,
                ],
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                env={**(ray_free_env() if self.own_ray else os.environ), **self.env},
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited early: {self.log.read_text()[-3000:]}")
            match = re.search(r"listening on ([\d.]+):(\d+)(?: \(Ray dashboard: (\S+)\))?", line)
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                self.dashboard = match.group(3) or ""
                if "--no-http" not in self.extra:  # serve prints its HTTP API's URL next
                    http = re.search(r"(https?://\S+)", self.proc.stdout.readline())
                    self.http_address = http.group(1) if http else ""
                    ui = re.search(r"^Web UI: (https?://\S+)", self.proc.stdout.readline())
                    self.web_ui = ui.group(1) if ui else ""
                return self.address
        raise TimeoutError("server did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def server_process(tmp_path: Path, ray_head: LocalHead, db_url: str) -> Iterator[ServerProcess]:
    """`raypipe serve` in a child process, on the session's Ray cluster, on SQLite (its default
    file in the data directory) and on PostgreSQL (``--db``: a fresh database for each test,
    dropped afterwards by the `postgres_url` fixture, once the server has been stopped)."""
    extra = ["--ray-address", ray_head.address]
    if not db_url.startswith("sqlite"):
        extra += ["--db", db_url]
    sp = ServerProcess(tmp_path / "data", *extra, env=ray_head.client_env())
    yield sp
    if sp.proc is not None and sp.proc.poll() is None:
        sp.proc.kill()
        sp.proc.wait()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report on its test item (``item.rep_call``...), for fixtures that keep
    evidence of a failure (the browser tests' screenshots)."""
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())  # type: ignore[attr-defined]
