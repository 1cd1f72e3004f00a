"""Restart, SIGTERM and kill -9 of a real `raypipe serve` process, on SQLite and PostgreSQL:
nothing committed is lost, and calls in flight at SIGTERM finish."""

from __future__ import annotations

import signal
import threading
import time

import grpc

from raypipe.v1 import pipeline_pb2, pipeline_service_pb2_grpc, pipeline_spec_pb2
from raypipe.v1 import pipeline_service_pb2 as pb
from tests.integration.conftest import Api, ErrorDetails, ServerProcess, error_details
from tests.integration.test_pipeline_service import chain_spec


def _uses_the_database_asked_for(server_process: ServerProcess, db_url: str) -> None:
    """SQLite is the default file in the data directory; with PostgreSQL there is none."""
    sqlite_file = server_process.data_dir / "raypipe.db"
    assert sqlite_file.exists() == db_url.startswith("sqlite"), db_url


def _snapshot(api: Api) -> tuple[list[pipeline_pb2.Pipeline], list[pipeline_pb2.PipelineVersion]]:
    pipelines = list(api.pipelines.ListPipelines(pb.ListPipelinesRequest(page_size=100)).pipelines)
    versions: list[pipeline_pb2.PipelineVersion] = []
    for p in pipelines:
        versions += api.pipelines.ListPipelineVersions(
            pb.ListPipelineVersionsRequest(parent=p.name, page_size=100)
        ).pipeline_versions
    return pipelines, versions


def _populate(api: Api, n: int) -> None:
    for i in range(n):
        api.pipelines.CreatePipeline(pb.CreatePipelineRequest(pipeline_id=f"p{i}"))
        for k in range(3):
            api.pipelines.CreatePipelineVersion(
                pb.CreatePipelineVersionRequest(
                    parent=f"pipelines/p{i}",
                    pipeline_version=pipeline_pb2.PipelineVersion(spec=chain_spec(k + 1)),
                )
            )
    api.pipelines.RollbackPipeline(
        pb.RollbackPipelineRequest(name="pipelines/p0", version="pipelines/p0/versions/1")
    )


def test_sigterm_then_restart_finds_everything(server_process: ServerProcess, db_url: str) -> None:
    api = Api.connect(server_process.start())
    _uses_the_database_asked_for(server_process, db_url)
    _populate(api, 3)
    before = _snapshot(api)
    api.channel.close()
    assert server_process.terminate() == 0
    api = Api.connect(server_process.start())
    assert _snapshot(api) == before
    api.channel.close()


def test_kill9_loses_nothing_committed(server_process: ServerProcess, db_url: str) -> None:
    api = Api.connect(server_process.start())
    _uses_the_database_asked_for(server_process, db_url)
    _populate(api, 2)
    # Keep writing from another thread while the process is killed: every acknowledged write
    # must be there after the restart.
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            try:
                v = api.pipelines.CreatePipelineVersion(
                    pb.CreatePipelineVersionRequest(
                        parent="pipelines/p1",
                        pipeline_version=pipeline_pb2.PipelineVersion(spec=chain_spec(2)),
                    )
                ).pipeline_version
                acknowledged.append(v.version_number)
            except grpc.RpcError:
                return

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acknowledged) < 20 and thread.is_alive():
        threading.Event().wait(0.01)
    server_process.kill9()
    stop.set()
    thread.join()
    api.channel.close()

    api = Api.connect(server_process.start())
    pipelines, versions = _snapshot(api)
    assert {p.name for p in pipelines} == {"pipelines/p0", "pipelines/p1"}
    numbers = sorted(v.version_number for v in versions if v.name.startswith("pipelines/p1/"))
    assert set(acknowledged) <= set(numbers)
    assert numbers == list(range(1, len(numbers) + 1)), "no gap in version numbers"
    p0 = next(p for p in pipelines if p.name == "pipelines/p0")
    assert p0.default_version == "pipelines/p0/versions/1"
    # the store still takes writes, continuing the numbering
    v = api.pipelines.CreatePipelineVersion(
        pb.CreatePipelineVersionRequest(
            parent="pipelines/p1",
            pipeline_version=pipeline_pb2.PipelineVersion(spec=chain_spec(1)),
        )
    ).pipeline_version
    assert v.version_number == numbers[-1] + 1
    api.channel.close()


def _dense_spec(nodes: int = 10_000, fan_in: int = 50) -> pipeline_spec_pb2.PipelineSpec:
    """A valid DAG at the node limit where every node depends on the ``fan_in`` nodes before
    it (half a million edges, 3.6 MB): a legitimate spec whose validation and storage take
    about a second, so CreatePipelineVersion with it is a genuinely slow call."""
    spec = pipeline_spec_pb2.PipelineSpec()
    for i in range(nodes):
        spec.nodes.add(
            id=f"n{i}", type="noop", depends_on=[f"n{j}" for j in range(max(0, i - fan_in), i)]
        )
    return spec


def _create(spec: pipeline_spec_pb2.PipelineSpec) -> pb.CreatePipelineVersionRequest:
    return pb.CreatePipelineVersionRequest(
        parent="pipelines/big", pipeline_version=pipeline_pb2.PipelineVersion(spec=spec)
    )


def test_sigterm_lets_the_call_in_flight_finish_and_refuses_new_ones(
    server_process: ServerProcess, db_url: str
) -> None:
    address = server_process.start()
    api = Api.connect(address)
    _uses_the_database_asked_for(server_process, db_url)
    api.pipelines.CreatePipeline(pb.CreatePipelineRequest(pipeline_id="big"))
    spec = _dense_spec()
    # How long the call takes on this machine, at its fastest of two (a first call slowed by
    # whatever else the machine does would overstate it): SIGTERM goes a quarter of that into
    # the next one, when the server has long received it and is still working on it.
    took = 60.0
    for _ in range(2):
        started = time.monotonic()
        api.pipelines.CreatePipelineVersion(_create(spec), timeout=60)
        took = min(took, time.monotonic() - started)
    assert took >= 0.3, f"the call is too fast ({took:.2f} s) to be caught in flight"

    in_flight = api.pipelines.CreatePipelineVersion.future(_create(spec), timeout=60)
    time.sleep(took / 4)
    assert not in_flight.done(), "the call ended before SIGTERM"
    assert server_process.proc is not None
    server_process.proc.send_signal(signal.SIGTERM)

    # New calls (on new connections) are refused, with a status clients retry, while the one
    # in flight still runs.
    refused: ErrorDetails | None = None
    while refused is None and not in_flight.done():
        with grpc.insecure_channel(address) as channel:
            try:
                pipeline_service_pb2_grpc.PipelineServiceStub(channel).ListNodeTypes(
                    pb.ListNodeTypesRequest(), timeout=5
                )
            except grpc.RpcError as exc:
                refused = error_details(exc)
        time.sleep(0.02)
    still_running = not in_flight.done()
    assert refused is not None, "no new call was refused during the call"
    assert refused.code == grpc.StatusCode.UNAVAILABLE, refused
    assert refused.reason == "SHUTTING_DOWN", refused
    assert still_running, "the call had ended before a new call was refused"

    version = in_flight.result().pipeline_version
    assert version.name == "pipelines/big/versions/3"
    assert len(version.spec.nodes) == 10_000
    assert server_process.proc.wait(timeout=60) == 0
    api.channel.close()

    # What the call acknowledged was committed.
    api = Api.connect(server_process.start())
    stored = api.pipelines.GetPipelineVersion(
        pb.GetPipelineVersionRequest(name="pipelines/big/versions/3")
    ).pipeline_version
    assert stored.spec == spec
    api.channel.close()
