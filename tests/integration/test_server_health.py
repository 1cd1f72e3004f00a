"""gRPC health follows the database: a real server on a real port, on SQLite and PostgreSQL,
loses its database for real and gets it back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane.server import PIPELINE_SERVICES, ControlPlane, ServerConfig

Status = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Outage:
    """A database for the server, and how to take it away and bring it back, the way it
    happens in production."""

    db_url: str
    break_: Callable[[], object]
    restore: Callable[[], object]


def _allow_connections(admin: sa.Engine, database: str, allowed: bool) -> None:
    """Let PostgreSQL accept connections to ``database`` again, or refuse new ones and end the
    open ones (what a failover or a database in maintenance looks like to the server)."""
    with admin.connect() as conn:
        conn.execute(
            sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        )
        if not allowed:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "sqlite":
        # The directory holding the database disappears (a volume unmounted, a directory
        # moved or deleted): new connections cannot open the file, and the open ones would
        # write to a file nobody finds again.
        here, away = tmp_path / "db", tmp_path / "db-away"
        yield Outage(
            f"sqlite:///{here / 'raypipe.db'}",
            lambda: here.rename(away),
            lambda: away.rename(here),
        )
        return
    # PostgreSQL refuses new connections to the database and ends the open ones (what a
    # failover or a database in maintenance looks like to the server).
    url = sa.make_url(request.getfixturevalue("postgres_url"))
    admin = sa.create_engine(
        request.getfixturevalue("postgres_admin_url"), isolation_level="AUTOCOMMIT"
    )

    def allow(allowed: bool) -> None:
        _allow_connections(admin, str(url.database), allowed)

    try:
        yield Outage(
            url.render_as_string(hide_password=False),
            lambda: allow(False),
            lambda: allow(True),
        )
    finally:
        allow(True)  # so that the postgres_url fixture can drop it
        admin.dispose()


def _wait_for(
    stub: health_pb2_grpc.HealthStub,
    want: health_pb2.HealthCheckResponse.ServingStatus.ValueType,
    timeout: float = 20,
) -> dict[str, str]:
    """Poll until "" and every service report ``want``; return what each last reported."""
    services = ("", *PIPELINE_SERVICES)
    deadline = time.monotonic() + timeout
    while True:
        seen = {
            s: Status.Name(stub.Check(health_pb2.HealthCheckRequest(service=s)).status)
            for s in services
        }
        if set(seen.values()) == {Status.Name(want)} or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_health_turns_not_serving_while_the_database_is_gone(
    outage: Outage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raypipe.server")
    cp = ControlPlane(
        ServerConfig(
            data_dir=tmp_path / "data",
            port=0,
            db_url=outage.db_url,
            enable_runs=False,
            health_interval=0.1,
        )
    )
    cp.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{cp.port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        everything = ("", *PIPELINE_SERVICES)
        assert _wait_for(stub, SERVING) == dict.fromkeys(everything, "SERVING")
        # Several checks in a row while the database is there change nothing.
        time.sleep(0.5)
        assert _wait_for(stub, SERVING, timeout=0) == dict.fromkeys(everything, "SERVING")

        outage.break_()
        assert _wait_for(stub, NOT_SERVING) == dict.fromkeys(everything, "NOT_SERVING")

        outage.restore()
        assert _wait_for(stub, SERVING) == dict.fromkeys(everything, "SERVING")

        # And it notices a second time.
        outage.break_()
        assert _wait_for(stub, NOT_SERVING) == dict.fromkeys(everything, "NOT_SERVING")
        outage.restore()
        assert _wait_for(stub, SERVING) == dict.fromkeys(everything, "SERVING")
    finally:
        channel.close()
        cp.stop(grace=1)
    assert cp._health_thread is not None
    assert not cp._health_thread.is_alive()
    # Each change is logged once, not every check.
    changes = [
        (r.levelname, r.getMessage().split(",")[0])
        for r in caplog.records
        if r.name == "raypipe.server" and r.getMessage().startswith("health:")
    ]
    assert (
        changes
        == [
            ("WARNING", "health: NOT_SERVING"),
            ("INFO", "health: SERVING again"),
        ]
        * 2
    )


def test_stop_ends_the_health_loop_and_stays_not_serving(tmp_path: Path) -> None:
    cp = ControlPlane(
        ServerConfig(data_dir=tmp_path / "data", port=0, enable_runs=False, health_interval=0.05)
    )
    cp.start()
    thread = cp._health_thread
    assert thread is not None
    assert thread.is_alive()
    cp.stop(grace=1)
    assert not thread.is_alive()
    # The servicer outlives the server: nothing turned it back to SERVING after stop().
    response = cp._health.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert response.status == NOT_SERVING


def test_health_interval_zero_runs_no_loop(tmp_path: Path) -> None:
    cp = ControlPlane(
        ServerConfig(data_dir=tmp_path / "data", port=0, enable_runs=False, health_interval=0)
    )
    cp.start()
    try:
        assert cp._health_thread is None
    finally:
        cp.stop(grace=1)
    with pytest.raises(ValueError, match="health_interval"):
        ServerConfig(data_dir=tmp_path, health_interval=-1)


@pytest.mark.postgres
def test_calls_during_a_database_outage_are_unavailable_not_internal(
    postgres_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    from raypipe.v1 import pipeline_service_pb2 as ppb
    from raypipe.v1 import pipeline_service_pb2_grpc

    url = sa.make_url(postgres_url)
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")

    def allow(allowed: bool) -> None:
        _allow_connections(admin, str(url.database), allowed)

    cp = ControlPlane(
        ServerConfig(data_dir=tmp_path / "data", port=0, db_url=postgres_url, enable_runs=False)
    )
    cp.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{cp.port}")
    stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
    try:
        stub.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id="kept"))
        allow(False)
        for call, message in (
            (stub.GetPipeline, ppb.GetPipelineRequest(name="pipelines/kept")),
            (stub.ListPipelines, ppb.ListPipelinesRequest(page_size=10)),
            (stub.CreatePipeline, ppb.CreatePipelineRequest(pipeline_id="new")),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(message)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
            details = caught.value.details() or ""
            assert "storage is unavailable" in details
            # the driver's message (host, port, database) stays in the server log
            assert str(url.port) not in details
            assert str(url.database) not in details
        allow(True)
        # the pool recovers by itself, and nothing was lost or half-written
        deadline = time.monotonic() + 20
        while True:
            try:
                names = [p.name for p in stub.ListPipelines(ppb.ListPipelinesRequest()).pipelines]
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert names == ["pipelines/kept"]
    finally:
        allow(True)
        channel.close()
        cp.stop(grace=1)
        admin.dispose()
