"""A fuzz test of both ports: a few thousand mutated pipeline specs, schedules and runs, and
malformed messages (random bytes as protobuf, broken JSON, wrong types), through gRPC and the
Connect HTTP port. None may get INTERNAL or UNKNOWN, the server must stay SERVING, and a call
that is refused must leave what is stored as it was.

The mutations are seeded (``FUZZ_SEED``, printed on failure) so a failure can be replayed."""

from __future__ import annotations

import copy
import json
import os
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane.server import ControlPlane, ServerConfig
from ray_nodes.cluster import LocalHead
from raypipe.v1 import (
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
)

SEED = int(os.environ.get("FUZZ_SEED", "20261203"))
SPECS = int(os.environ.get("FUZZ_SPECS", "1500"))
RAW = int(os.environ.get("FUZZ_RAW", "600"))
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
SERVICES = [
    service
    for module in (pipeline_service_pb2, run_service_pb2, schedule_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
]
# Not called with random input: they would wait on a run or a schedule's fire.
STREAMING = {"WatchRun", "WatchNodeLogs"}

VALID_SPEC: dict[str, Any] = {
    "parameters": {"pause": 0.0, "name": "x"},
    "nodes": [
        {"id": "start", "type": "noop"},
        {
            "id": "left",
            "type": "noop",
            "depends_on": ["start"],
            "params": {"sleep_seconds": "{{ parameters.pause }}"},
        },
        {
            "id": "right",
            "type": "noop",
            "depends_on": ["start"],
            "resources": {"num_cpus": 0.5},
            "retry": {"max_retries": 1, "initial_backoff": "0.5s"},
        },
        {"id": "join", "type": "noop", "depends_on": ["left", "right"], "timeout": "60s"},
    ],
}
ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    -(2**63),
    1e308,
    -1e-308,
    "",
    " ",
    "\x00",
    "é" * 300,
    "{{ parameters.nope }}",
    "{{",
    "}}",
    "../../etc/passwd",
    [],
    [1, [2, [3]]],
    {},
    {"a": {"b": None}},
    "0.5s",
    "-1s",
    "99999999999s",
    "nan",
    float("inf"),
]


def mutate(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One to three random changes of the spec: fields set to odd values, dropped, nodes
    duplicated or removed, edges to nowhere or back (cycles), unknown types and keys."""
    out = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        nodes = out.setdefault("nodes", [])
        choice = rng.randrange(11)
        node = rng.choice(nodes) if nodes else None
        if choice == 0 and node is not None:
            node[
                rng.choice(
                    [
                        "id",
                        "type",
                        "depends_on",
                        "params",
                        "resources",
                        "retry",
                        "timeout",
                        "cache",
                        "display_name",
                    ]
                )
            ] = rng.choice(ODD_VALUES)
        elif choice == 1 and node is not None:
            node.pop(rng.choice(list(node)), None)
        elif choice == 2 and node is not None:
            nodes.append(copy.deepcopy(node))  # a duplicate id
        elif choice == 3 and nodes:
            nodes.pop(rng.randrange(len(nodes)))
        elif choice == 4 and node is not None:
            node["depends_on"] = [
                rng.choice([n.get("id", "") for n in nodes] + ["nowhere", node.get("id", "")])
            ]
        elif choice == 5 and node is not None:
            node["type"] = rng.choice(
                ["", "no_such_type", "data_loader", "model_trainer", "NOOP", "noop "]
            )
        elif choice == 6 and node is not None:
            if not isinstance(node.get("params"), dict):
                node["params"] = {}
            key = rng.choice(["sleep_seconds", "path", "x", "test_size", ""])
            node["params"][key] = rng.choice(ODD_VALUES)
        elif choice == 7 and node is not None:
            node["resources"] = {
                rng.choice(
                    ["num_cpus", "num_gpus", "memory_bytes", "gpu_policy", "accelerator_type"]
                ): rng.choice(ODD_VALUES)
            }
        elif choice == 8:
            out["parameters"] = rng.choice(
                [{}, {"": 1}, {"a b": 1}, {"pause": None}, {"x" * 300: 1}, rng.choice(ODD_VALUES)]
            )
        elif choice == 9:
            out[rng.choice(["failure_policy", "tracking", "unknown_key"])] = rng.choice(
                [*ODD_VALUES, "FAILURE_POLICY_FAIL_FAST", 7]
            )
        else:
            nodes.extend(
                {"id": f"n{i}", "type": "noop", "depends_on": [f"n{i + 1}"]}
                for i in range(rng.randint(1, 4))
            )
            nodes[-1]["depends_on"] = ["n0"]  # a cycle
    return out


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead) -> Iterator[ControlPlane]:
    tmp = tmp_path_factory.mktemp("fuzz")
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


class Target:
    def __init__(self, plane: ControlPlane) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{plane.port}")
        self.http = f"http://127.0.0.1:{plane.http_port}"
        self.pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self.channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.schedules = schedule_service_pb2_grpc.ScheduleServiceStub(self.channel)

    def state(self) -> tuple[Any, ...]:
        """What is stored, in short: the pipelines with their version numbers and default,
        the number of runs and the schedules."""
        pipelines = self.pipelines.ListPipelines(
            pipeline_service_pb2.ListPipelinesRequest(page_size=1000), timeout=30
        )
        runs = self.runs.ListRuns(
            run_service_pb2.ListRunsRequest(page_size=1000, omit_nodes=True), timeout=30
        )
        schedules = self.schedules.ListSchedules(
            schedule_service_pb2.ListSchedulesRequest(page_size=1000), timeout=30
        )
        return (
            tuple(
                (p.name, p.latest_version_number, p.default_version, p.etag)
                for p in pipelines.pipelines
            ),
            len(runs.runs),
            tuple((s.name, s.etag) for s in schedules.schedules),
        )

    def grpc(self, call: Any, request: Any) -> grpc.StatusCode:
        try:
            call(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    def post(
        self, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{self.http}{path}", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, "ok"
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw).get("code", "")
            except ValueError:
                return exc.code, raw[:100].decode(errors="replace")


def check(results: list[tuple[str, Any]], seed: int) -> None:
    bad = [
        (what, code)
        for what, code in results
        if code in BAD_CODES or code in ("internal", "unknown")
    ]
    assert not bad, f"FUZZ_SEED={seed}: {len(bad)} calls got INTERNAL or UNKNOWN, e.g. {bad[:5]}"


def test_mutated_specs_schedules_and_runs_never_break_the_server(plane: ControlPlane) -> None:
    rng = random.Random(SEED)
    target = Target(plane)
    target.pipelines.CreatePipeline(
        pipeline_service_pb2.CreatePipelineRequest(pipeline_id="fuzzed"), timeout=30
    )
    results: list[tuple[str, Any]] = []
    accepted = 0
    for i in range(SPECS):
        spec_json = mutate(VALID_SPEC, rng)
        before = target.state()
        kind = i % 4
        try:
            spec = json_format.ParseDict(
                spec_json, pipeline_service_pb2.ValidatePipelineSpecRequest().spec
            )
        except (json_format.ParseError, ValueError, TypeError, OverflowError):
            spec = None  # not even a PipelineSpec: sent as JSON over HTTP below
        if spec is None or kind == 3:
            status, code = target.post(
                "/raypipe.v1.PipelineService/CreatePipelineVersion",
                json.dumps(
                    {"parent": "pipelines/fuzzed", "pipelineVersion": {"spec": spec_json}},
                    default=str,
                ).encode(),
            )
            results.append((f"http spec {i}", code))
            refused = status != 200
        elif kind == 0:
            code = target.grpc(
                target.pipelines.ValidatePipelineSpec,
                pipeline_service_pb2.ValidatePipelineSpecRequest(spec=spec),
            )
            results.append((f"validate {i}", code))
            refused = True  # validation never stores anything
        elif kind == 1:
            request = pipeline_service_pb2.CreatePipelineVersionRequest(parent="pipelines/fuzzed")
            request.pipeline_version.spec.CopyFrom(spec)
            code = target.grpc(target.pipelines.CreatePipelineVersion, request)
            results.append((f"version {i}", code))
            refused = code is not grpc.StatusCode.OK
            accepted += not refused
        else:
            choices: list[dict[str, Any]] = [{}, {"pause": "x"}, {"nope": 1}, {"pause": 0}]
            create = run_service_pb2.CreateRunRequest(request_id=f"fuzz-{i}")
            create.run.pipeline = rng.choice(
                ["pipelines/fuzzed", "pipelines/none", "", "runs/x", "pipelines/UP"]
            )
            for key, value in rng.choice(choices).items():
                json_format.ParseDict(value, create.run.parameters[key])
            create.run.display_name = rng.choice(["", "x" * 1000, "\x00"])
            code = target.grpc(target.runs.CreateRun, create)
            results.append((f"run {i}", code))
            refused = code is not grpc.StatusCode.OK
        if refused:
            assert target.state() == before, (
                f"FUZZ_SEED={SEED}: refused call {i} changed what is stored"
            )
    check(results, SEED)
    assert accepted > 0, (
        "no mutated spec was valid: the mutations are too strong to test acceptance"
    )
    # Schedules: odd triggers, zones, times and policies.
    for i in range(SPECS // 5):
        body: dict[str, Any] = {"pipeline": rng.choice(["pipelines/fuzzed", "pipelines/none", "x"])}
        body[rng.choice(["cron", "interval", "once", "nothing"])] = rng.choice(
            [
                {"expression": rng.choice(["* * * * *", "61 * * * *", "", "@hourly", "L W #"])},
                {"every": rng.choice(["0s", "-5s", "1s", "x"])},
                {"at": rng.choice(["2020-01-01T00:00:00Z", "never", ""])},
                {},
            ]
        )
        body["timeZone"] = rng.choice(["UTC", "Mars/Olympus", "", "Europe/Paris", "\x00"])
        body[rng.choice(["maxRuns", "overlapPolicy", "catchupPolicy", "jitter"])] = rng.choice(
            [*ODD_VALUES, "OVERLAP_POLICY_SKIP"]
        )
        before = target.state()
        status, code = target.post(
            "/raypipe.v1.ScheduleService/CreateSchedule",
            json.dumps(
                {"scheduleId": rng.choice(["", "s-1", "BAD ID", "x" * 70]), "schedule": body},
                default=str,
            ).encode(),
        )
        results.append((f"schedule {i}", code))
        if status != 200:
            assert target.state() == before, (
                f"FUZZ_SEED={SEED}: refused schedule {i} changed what is stored"
            )
    check(results, SEED)
    health = health_pb2_grpc.HealthStub(target.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_malformed_messages_on_every_method_are_invalid_argument(plane: ControlPlane) -> None:
    rng = random.Random(SEED + 1)
    target = Target(plane)
    before = target.state()
    results: list[tuple[str, Any]] = []
    methods = [(s, m) for s in SERVICES for m in s.methods if m.name not in STREAMING]
    for _i in range(RAW):
        service, method = rng.choice(methods)
        path = f"/{service.full_name}/{method.name}"
        junk = rng.randbytes(rng.randint(1, 200))
        stub = target.channel.unary_unary(
            path,
            request_serializer=lambda b: b,
            response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
        )
        code = target.grpc(stub, junk)
        results.append((f"grpc {path}", code))
        body, kind = rng.choice(
            [
                (junk, "application/proto"),
                (junk, "application/json"),
                (b"{" + junk, "application/json"),
                (json.dumps(rng.choice(ODD_VALUES), default=str).encode(), "application/json"),
                (
                    json.dumps({"name": rng.choice(ODD_VALUES)}, default=str).encode(),
                    "application/json",
                ),
                (b"", "application/json"),
                (b"{}", "text/plain"),
            ]
        )
        status, connect_code = target.post(path, body, kind)
        results.append((f"http {path} {kind}", connect_code if status != 200 else "ok"))
        assert status < 500 or connect_code in ("unavailable",), (path, status, connect_code)
    check(results, SEED + 1)
    assert target.state() == before, "malformed messages changed what is stored"
    health = health_pb2_grpc.HealthStub(target.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # A malformed gRPC message is named as such.
    stub = target.channel.unary_unary(
        "/raypipe.v1.PipelineService/GetPipeline",
        request_serializer=lambda b: b,
        response_deserializer=pipeline_service_pb2.GetPipelineResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"\xff\xff\xff\xff", timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in (caught.value.details() or "")
