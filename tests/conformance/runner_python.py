"""The conformance scenario (scenario.json beside this file) through the Python SDK.

    RAYPIPE_ADDRESS=localhost:50051 python -m tests.conformance.runner_python [scenario.json]

One line per step ("ok <id>" or "FAIL <id>: <why>"), then "<N> passed, <M> failed"; exit 0 only
when every step passed. The TypeScript and Go runners do the same steps through their clients.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

import raypipe
from raypipe._rpc import tls_credentials
from raypipe.v1 import pipeline_spec_pb2, run_pb2

SCENARIO = Path(__file__).with_name("scenario.json")
Run = run_pb2.Run
RunEvent = run_pb2.RunEvent
NodeState = run_pb2.NodeExecution.State


class StepFailed(Exception):
    """A step's expectation did not hold."""


def check(condition: bool, why: str) -> None:
    if not condition:
        raise StepFailed(why)


def substitute(value: Any, prefix: str) -> Any:
    """The step with every '{prefix}' filled in."""
    if isinstance(value, str):
        return value.replace("{prefix}", prefix)
    if isinstance(value, list):
        return [substitute(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, prefix) for k, v in value.items()}
    return value


def expect_error(call: Callable[[], object], expect: dict[str, Any]) -> raypipe.RPCError:
    """The call fails with the expected code, ErrorInfo and field violations."""
    try:
        call()
    except raypipe.RPCError as e:
        error = e
    else:
        raise StepFailed(f"succeeded; expected {expect['code']}")
    check(error.code.name == expect["code"], f"code {error.code.name}, expected {expect['code']}")
    check(
        error.reason == expect["reason"], f"reason {error.reason!r}, expected {expect['reason']!r}"
    )
    if "domain" in expect:
        check(error.domain == expect["domain"], f"domain {error.domain!r}")
    for key, value in expect.get("metadata", {}).items():
        check(
            error.metadata.get(key) == value,
            f"metadata {dict(error.metadata)}: {key} is not {value!r}",
        )
    if "field_violations" in expect:
        paths = sorted(v.field for v in error.field_violations)
        check(paths == sorted(expect["field_violations"]), f"field violations at {paths}")
    return error


class Runner:
    def __init__(self, client: raypipe.Client, channel: grpc.Channel, scenario: dict[str, Any]):
        self.client = client
        self.channel = channel
        self.specs = {
            name: json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
            for name, spec in scenario["specs"].items()
        }
        self.runs: dict[str, Run] = {}  # the run a step created, by step id

    def health(self, step: dict[str, Any]) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        check(status == step["expect"]["status"], f"status {status}")

    def list_node_types(self, step: dict[str, Any]) -> None:
        types = {t.type for t in self.client.list_node_types()}
        missing = set(step["expect"]["includes"]) - types
        check(not missing, f"missing types {sorted(missing)}")

    def create_pipeline(self, step: dict[str, Any]) -> None:
        pipeline = self.client.create_pipeline(step["pipeline_id"])
        check(pipeline.name == step["expect"]["name"], f"name {pipeline.name}")

    def create_version(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        spec = self.specs[step["spec"]]
        if "code" in expect:
            expect_error(
                lambda: self.client.create_pipeline_version(step["pipeline"], spec), expect
            )
            versions = list(self.client.list_pipeline_versions(step["pipeline"]))
            check(len(versions) == expect["versions_after"], f"{len(versions)} versions after")
            return
        version = self.client.create_pipeline_version(step["pipeline"], spec)
        check(version.name == expect["name"], f"name {version.name}")
        check(
            version.version_number == expect["version_number"], f"number {version.version_number}"
        )
        pipeline = self.client.get_pipeline(step["pipeline"])
        check(
            pipeline.default_version == expect["default_version"],
            f"default {pipeline.default_version}",
        )

    def create_run_twice(self, step: dict[str, Any]) -> None:
        first = self.client.create_run(step["pipeline"], request_id=step["request_id"])
        again = self.client.create_run(step["pipeline"], request_id=step["request_id"])
        check(first.name == again.name, f"two runs: {first.name} and {again.name}")
        check(first.pipeline_version == step["expect"]["pipeline_version"], first.pipeline_version)
        self.runs[step["id"]] = first

    def watch_run(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        responses = list(self.client.watch_run(self.runs[step["run"]], timeout=120))
        check(bool(responses), "no message")
        first = RunEvent.Type.Name(responses[0].event.type)
        check(first == expect["first_event"], f"first event {first}")
        order = list(node_states(responses))
        for node in expect["nodes"]:
            states = [state for n, state in order if n == node]
            check("STATE_SUCCEEDED" in states, f"{node} never SUCCEEDED: {states}")
            check(
                "STATE_RUNNING" in states[: states.index("STATE_SUCCEEDED")],
                f"{node} was not seen RUNNING before SUCCEEDED: {states}",
            )
        final = Run.State.Name(responses[-1].run.state)
        check(final == expect["final_state"], f"the stream ended with the run {final}")

    def node_logs(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        run = self.runs[step["run"]]
        page = self.client.get_node_logs(run, step["node"], attempt=1)
        check(len(page.lines) == expect["lines"], f"{len(page.lines)} lines")
        check(page.complete == expect["complete"], f"complete {page.complete}")
        attempt = expect["missing_attempt"]
        expect_error(lambda: self.client.get_node_logs(run, step["node"], attempt=attempt), expect)

    def list_runs_pages(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        created = [self.client.create_run(step["pipeline"]) for _ in range(step["create_runs"])]
        pages = list(
            self.client.list_runs(pipeline=step["pipeline"], page_size=step["page_size"]).pages()
        )
        sizes = [len(page.items) for page in pages]
        check(sizes == expect["page_sizes"], f"page sizes {sizes}")
        runs = [run for page in pages for run in page.items]
        names = [run.name for run in runs]
        check(len(set(names)) == len(names) == expect["total"], f"runs {names}")
        mine = {r.name for r in created} | {self.runs["idempotent_run"].name}
        check(set(names) == mine, f"listed {sorted(names)}, created {sorted(mine)}")
        times = [run.create_time.ToNanoseconds() for run in runs]
        check(times == sorted(times, reverse=True), "not newest first")
        for run in created:
            done = self.client.wait_run(run, timeout=120, raise_on_failure=False)
            state = Run.State.Name(done.state)
            check(state == expect["final_state"], f"{run.name} ended {state}")

    def get_run(self, step: dict[str, Any]) -> None:
        expect_error(lambda: self.client.get_run(step["name"]), step["expect"])

    def cancel_run(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        version = self.client.create_pipeline_version(
            step["pipeline"], self.specs[step["spec"]], keep_default_version=True
        )
        check(version.name == expect["version"], f"version {version.name}")
        default = self.client.get_pipeline(step["pipeline"]).default_version
        check(default == expect["default_version"], f"the default moved to {default}")
        run = self.client.create_run(version=version.name)
        for response in self.client.watch_run(run, timeout=120):
            if any(n.state == NodeState.STATE_RUNNING for n in response.run.nodes) or (
                response.event.node_state == NodeState.STATE_RUNNING
            ):
                break
        self.client.cancel_run(run)
        done = self.client.wait_run(run, timeout=120, raise_on_failure=False)
        state = Run.State.Name(done.state)
        check(state == expect["final_state"], f"ended {state}")

    def schedule_trigger(self, step: dict[str, Any]) -> None:
        expect = step["expect"]
        schedule = self.client.create_schedule(
            step["pipeline"], cron=step["cron"], schedule_id=step["schedule_id"], paused=True
        )
        check(schedule.paused == expect["paused"], f"paused {schedule.paused}")
        run = self.client.trigger_schedule(schedule)
        check(run.schedule == expect["schedule"], f"the run names {run.schedule!r}")
        runs = list(self.client.list_runs(schedule=schedule.name))
        check(len(runs) == expect["runs"], f"{len(runs)} runs of the schedule")
        done = self.client.wait_run(run, timeout=120, raise_on_failure=False)
        state = Run.State.Name(done.state)
        check(state == expect["final_state"], f"ended {state}")

    def delete_pipeline(self, step: dict[str, Any]) -> None:
        expect_error(lambda: self.client.delete_pipeline(step["name"]), step["expect"])
        self.client.get_pipeline(step["name"])  # still there: NOT_FOUND would fail the step

    def clean_up(self, step: dict[str, Any]) -> None:
        self.client.delete_schedule(step["schedule"])
        self.client.delete_pipeline(step["pipeline"])
        expect_error(lambda: self.client.get_pipeline(step["pipeline"]), step["expect"])


def node_states(responses: list[Any]) -> Iterator[tuple[str, str]]:
    """(node, state) in the order the stream showed them: the snapshot's, then each event's."""
    for response in responses:
        event = response.event
        if event.type == RunEvent.TYPE_SNAPSHOT:
            for node in response.run.nodes:
                yield node.node_id, NodeState.Name(node.state)
        elif event.type == RunEvent.TYPE_NODE_STATE_CHANGED:
            yield event.node_id, NodeState.Name(event.node_state)


def main() -> int:
    address = os.environ.get("RAYPIPE_ADDRESS") or "localhost:50051"
    scenario = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else SCENARIO).read_text())
    prefix = f"conf-py-{secrets.token_hex(3)}"
    passed = failed = 0
    # The SDK reads RAYPIPE_TOKEN and RAYPIPE_TLS_* itself; the raw channel (health, which is
    # open to everyone) takes the same TLS.
    credentials = tls_credentials(None, None, None)
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with raypipe.Client(address, timeout=60) as client, channel:
        runner = Runner(client, channel, scenario)
        for step in scenario["steps"]:
            step = substitute(step, prefix)
            try:
                getattr(runner, step["action"])(step)
            except Exception as e:  # every failure is reported as the step's
                failed += 1
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"FAIL {step['id']}: {why}", flush=True)
            else:
                passed += 1
                print(f"ok {step['id']}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
