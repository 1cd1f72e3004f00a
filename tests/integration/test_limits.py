"""A request larger than the server's limit is RESOURCE_EXHAUSTED on both ports, stores
nothing and leaves the server serving."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane.server import ControlPlane, ServerConfig
from raypipe.v1 import pipeline_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc

LIMIT = 64 * 1024


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(
        ServerConfig(
            data_dir=tmp_path / "data",
            port=0,
            http_port=0,
            enable_runs=False,
            max_request_bytes=LIMIT,
        )
    )
    cp.start()
    yield cp
    cp.stop(grace=1)


def test_a_request_over_the_limit_is_resource_exhausted_on_both_ports(plane: ControlPlane) -> None:
    big = pipeline_service_pb2.CreatePipelineRequest(
        pipeline_id="big", pipeline=pipeline_pb2.Pipeline(description="x" * (2 * LIMIT))
    )
    with grpc.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreatePipeline(big, timeout=30)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert str(LIMIT) in (caught.value.details() or "")
        body = json.dumps({"pipelineId": "big", "pipeline": {"description": "x" * (2 * LIMIT)}})
        request = urllib.request.Request(
            f"http://127.0.0.1:{plane.http_port}/raypipe.v1.PipelineService/CreatePipeline",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert json.loads(refused.value.read())["code"] == "resource_exhausted"
        # Nothing was stored, and the server serves on; a request under the limit works.
        assert not stub.ListPipelines(
            pipeline_service_pb2.ListPipelinesRequest(), timeout=30
        ).pipelines
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        small = pipeline_service_pb2.CreatePipelineRequest(pipeline_id="small")
        assert stub.CreatePipeline(small, timeout=30).pipeline.name == "pipelines/small"
