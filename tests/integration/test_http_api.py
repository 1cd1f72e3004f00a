"""The HTTP port: every service over the Connect protocol, from curl and as JSON, with the
same codes, messages, ErrorInfo and BadRequest as gRPC for the same bad inputs; docs/http.md's
curl examples run as written."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from control_plane.server import ControlPlane, ServerConfig
from ray_nodes.cluster import LocalHead
from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2, schedule_pb2
from raypipe.v1 import pipeline_service_pb2 as ppb
from raypipe.v1 import run_service_pb2 as rpb
from raypipe.v1 import schedule_service_pb2 as spb
from tests.integration.conftest import Api, ErrorDetails, error_details

DOCS = Path(__file__).resolve().parents[2] / "docs" / "http.md"
CONNECT_TO_GRPC = {"canceled": "CANCELLED"}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead) -> Iterator[ControlPlane]:
    tmp = tmp_path_factory.mktemp("http")
    cp = ControlPlane(
        ServerConfig(
            data_dir=tmp / "data",
            port=0,
            http_port=0,
            ray_address=ray_head.address,
            data_roots=(tmp,),
        )
    )
    cp.start()
    yield cp
    cp.stop(grace=1)


@pytest.fixture(scope="module")
def api(plane: ControlPlane) -> Iterator[Api]:
    a = Api.connect(f"127.0.0.1:{plane.port}")
    yield a
    a.channel.close()


def post(plane: ControlPlane, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{plane.http_port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def connect_details(body: dict[str, Any]) -> ErrorDetails:
    """A Connect error body unpacked like a gRPC status (see conftest.error_details)."""
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: dict[str, str] = {}
    for detail in body.get("details", []):
        value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        if detail["type"] == "google.rpc.ErrorInfo":
            info = error_details_pb2.ErrorInfo.FromString(value)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail["type"] == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(value)
            violations = {v.field: v.description for v in bad.field_violations}
    name = CONNECT_TO_GRPC.get(body["code"], body["code"].upper())
    return ErrorDetails(
        grpc.StatusCode[name], body["message"], reason, domain, violations, metadata
    )


def invalid_spec() -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(
        {
            "nodes": [
                {"id": "a", "type": "noop", "dependsOn": ["c"]},
                {"id": "b", "type": "no_such_type"},
                {
                    "id": "c",
                    "type": "noop",
                    "params": {"sleep_seconds": "slow"},
                    "dependsOn": ["a"],
                },
            ]
        },
        pipeline_spec_pb2.PipelineSpec(),
    )


def bad_inputs(api: Api) -> list[tuple[str, Any, Message]]:
    """(path, gRPC method, request) of bad calls, each with its own problem."""
    return [
        ("/raypipe.v1.PipelineService/CreatePipeline", api.pipelines.CreatePipeline,
         ppb.CreatePipelineRequest(pipeline_id="Not An Id")),
        ("/raypipe.v1.PipelineService/GetPipeline", api.pipelines.GetPipeline,
         ppb.GetPipelineRequest(name="pipelines/nope")),
        ("/raypipe.v1.PipelineService/CreatePipelineVersion", api.pipelines.CreatePipelineVersion,
         ppb.CreatePipelineVersionRequest(
             parent="pipelines/http",
             pipeline_version=pipeline_pb2.PipelineVersion(spec=invalid_spec()))),
        ("/raypipe.v1.PipelineService/ValidatePipelineSpec", api.pipelines.ValidatePipelineSpec,
         ppb.ValidatePipelineSpecRequest(spec=invalid_spec())),
        ("/raypipe.v1.PipelineService/DeletePipeline", api.pipelines.DeletePipeline,
         ppb.DeletePipelineRequest(name="pipelines/http")),
        ("/raypipe.v1.RunService/GetRun", api.runs.GetRun, rpb.GetRunRequest(name="runs/nope")),
        ("/raypipe.v1.RunService/ListRuns", api.runs.ListRuns,
         rpb.ListRunsRequest(page_size=-1, filter="state = ")),
        ("/raypipe.v1.RunService/CreateRun", api.runs.CreateRun,
         rpb.CreateRunRequest(run={"pipeline": "pipelines/nope"})),
        ("/raypipe.v1.RunService/GetNodeLogs", api.runs.GetNodeLogs,
         rpb.GetNodeLogsRequest(name="runs/x/nodes/a/attempts/0/logs")),
        ("/raypipe.v1.ScheduleService/CreateSchedule", api.schedules.CreateSchedule,
         spb.CreateScheduleRequest(schedule=schedule_pb2.Schedule(
             pipeline="pipelines/http", cron={"expression": "61 * * * *"}, time_zone="Mars/Olympus"))),
    ]  # fmt: skip


def test_connect_errors_equal_the_grpc_errors(plane: ControlPlane, api: Api) -> None:
    api.pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id="http"))
    api.pipelines.CreatePipelineVersion(
        ppb.CreatePipelineVersionRequest(
            parent="pipelines/http",
            pipeline_version=pipeline_pb2.PipelineVersion(
                spec=json_format.ParseDict(
                    {"nodes": [{"id": "a", "type": "noop"}]}, pipeline_spec_pb2.PipelineSpec()
                )
            ),
        )
    )
    api.schedules.CreateSchedule(
        spb.CreateScheduleRequest(
            schedule_id="http-nightly",
            schedule=schedule_pb2.Schedule(
                pipeline="pipelines/http", cron={"expression": "0 3 * * *"}
            ),
        )
    )
    seen_codes = set()
    for path, method, request in bad_inputs(api):
        with pytest.raises(grpc.RpcError) as info:
            method(request)
        over_grpc = error_details(info.value)
        status, body = post(plane, path, json_format.MessageToDict(request))
        over_http = connect_details(body)
        assert over_http == over_grpc, path
        assert over_grpc.reason, path
        assert status >= 400, (path, status)
        seen_codes.add(over_grpc.code)
    assert seen_codes >= {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
    # Nothing was changed by the bad calls.
    assert (
        post(plane, "/raypipe.v1.PipelineService/GetPipeline", {"name": "pipelines/http"})[0] == 200
    )


def test_json_calls_and_unknown_paths(plane: ControlPlane) -> None:
    status, body = post(plane, "/grpc.health.v1.Health/Check", {})
    assert (status, body) == (200, {"status": "SERVING"})
    status, body = post(plane, "/raypipe.v1.PipelineService/ListNodeTypes", {})
    assert status == 200
    assert {"noop", "model_trainer"} <= {t["type"] for t in body["nodeTypes"]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{plane.http_port}/raypipe.v1.NoSuchService/Get", data=b"{}"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 404


def docs_commands() -> list[list[str]]:
    text = DOCS.read_text()
    block = re.search(r"## Examples.*?```sh\n(.*?)```", text, re.S)
    assert block, "docs/http.md lost its examples"
    return [shlex.split(c) for c in block.group(1).replace("\\\n", " ").splitlines() if c.strip()]


def test_the_docs_curl_examples_run_as_written(plane: ControlPlane) -> None:
    curl = shutil.which("curl")
    assert curl, "curl is needed (make test installs it)"
    commands = docs_commands()
    assert len(commands) == 7
    outputs = []
    for argv in commands:
        argv = [
            curl,
            *(a.replace("localhost:8280", f"127.0.0.1:{plane.http_port}") for a in argv[1:]),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr}"
        outputs.append(json.loads(done.stdout))
    health, types, created, version, run, runs, missing = outputs
    assert health == {"status": "SERVING"}
    assert types["nodeTypes"]
    assert created["pipeline"]["name"] == "pipelines/http-demo"
    assert version["pipelineVersion"]["name"] == "pipelines/http-demo/versions/1"
    assert run["run"]["pipeline"] == "pipelines/http-demo"
    assert runs["runs"]
    assert missing["code"] == "not_found"
    assert missing["details"][0]["type"] == "google.rpc.ErrorInfo"
