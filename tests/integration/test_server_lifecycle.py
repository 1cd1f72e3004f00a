"""Restart, SIGTERM and kill -9 of a real `raypipe serve` process: nothing committed is lost."""

from __future__ import annotations

import threading

import grpc

from raypipe.v1 import pipeline_pb2
from raypipe.v1 import pipeline_service_pb2 as pb
from tests.integration.conftest import Api, ServerProcess
from tests.integration.test_pipeline_service import chain_spec


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


def test_sigterm_then_restart_finds_everything(server_process: ServerProcess) -> None:
    api = Api.connect(server_process.start())
    _populate(api, 3)
    before = _snapshot(api)
    api.channel.close()
    assert server_process.terminate() == 0
    api = Api.connect(server_process.start())
    assert _snapshot(api) == before
    api.channel.close()


def test_kill9_loses_nothing_committed(server_process: ServerProcess) -> None:
    api = Api.connect(server_process.start())
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
