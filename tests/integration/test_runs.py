"""RunService end to end: a real server, a real local Ray cluster, a real SQLite file."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from control_plane.server import ControlPlane, ServerConfig
from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2, run_pb2
from raypipe.v1 import pipeline_service_pb2 as ppb
from raypipe.v1 import run_service_pb2 as rpb
from tests.integration.conftest import (
    Api,
    ErrorDetails,
    ServerProcess,
    error_details,
    expect_error,
)

if TYPE_CHECKING:
    from ray_nodes.cluster import LocalHead

RunState = run_pb2.Run.State
NodeState = run_pb2.NodeExecution.State
TERMINAL = {RunState.STATE_SUCCEEDED, RunState.STATE_FAILED, RunState.STATE_CANCELLED}
Spec = pipeline_spec_pb2.PipelineSpec


def noop(
    spec: Spec, node_id: str, *deps: str, sleep: float = 0, **resources: float
) -> pipeline_spec_pb2.Node:
    node = spec.nodes.add(id=node_id, type="noop", depends_on=deps)
    if sleep:
        node.params.update({"sleep_seconds": sleep})
    for key, value in resources.items():
        setattr(node.resources, key, value)
    return node


def chain(n: int, *, sleep: float = 0) -> Spec:
    spec = Spec()
    for i in range(n):
        noop(spec, f"n{i}", *([f"n{i - 1}"] if i else []), sleep=sleep)
    return spec


def register(api: Api, pipeline_id: str, spec: Spec) -> str:
    """Create the pipeline (if needed) and a version of ``spec``; returns the version name."""
    existing = api.pipelines.ListPipelines(ppb.ListPipelinesRequest(page_size=1000)).pipelines
    if f"pipelines/{pipeline_id}" not in {p.name for p in existing}:
        api.pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id=pipeline_id))
    return api.pipelines.CreatePipelineVersion(
        ppb.CreatePipelineVersionRequest(
            parent=f"pipelines/{pipeline_id}",
            pipeline_version=pipeline_pb2.PipelineVersion(spec=spec),
        )
    ).pipeline_version.name


def start(api: Api, pipeline_id: str, *, request_id: str = "", **fields: Any) -> run_pb2.Run:
    """Start a run of the pipeline; ``fields`` (labels, parameters, ...) go on the Run."""
    return api.runs.CreateRun(
        rpb.CreateRunRequest(
            run=run_pb2.Run(pipeline=f"pipelines/{pipeline_id}", **fields),
            request_id=request_id or str(uuid.uuid4()),
        )
    ).run


def wait(api: Api, name: str, timeout: float = 60) -> run_pb2.Run:
    """Follow WatchRun to the end and return the final run."""
    last = None
    for response in api.runs.WatchRun(rpb.WatchRunRequest(name=name), timeout=timeout):
        last = response.run
    assert last is not None
    assert last.state in TERMINAL, RunState.Name(last.state)
    return last


def states(run: run_pb2.Run) -> dict[str, str]:
    return {n.node_id: NodeState.Name(n.state) for n in run.nodes}


def test_chain_of_twenty_succeeds_with_full_records(run_api: Api) -> None:
    register(run_api, "chain", chain(20))
    run = start(run_api, "chain")
    assert run.state == RunState.STATE_PENDING
    assert run.pipeline_version == "pipelines/chain/versions/1"
    final = wait(run_api, run.name)
    assert final.state == RunState.STATE_SUCCEEDED
    assert [n.node_id for n in final.nodes] == [f"n{i}" for i in range(20)]
    previous_end = None
    for node in final.nodes:
        assert node.state == NodeState.STATE_SUCCEEDED
        assert node.attempt == 1
        assert node.start_time.ToNanoseconds() <= node.end_time.ToNanoseconds()
        if previous_end is not None:  # a chain: each node starts after its upstream ended
            assert node.start_time.ToNanoseconds() >= previous_end
        previous_end = node.end_time.ToNanoseconds()
        assert "duration_seconds" in node.metrics
        assert "peak_memory_bytes" in node.metrics
        assert node.ray_task_id
    assert final.start_time.seconds
    assert final.end_time.seconds
    got = run_api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
    assert got == final


def test_diamond_runs_branches_in_parallel(run_api: Api) -> None:
    spec = Spec()
    noop(spec, "top")
    noop(spec, "left", "top", sleep=1.5, num_cpus=0.5)
    noop(spec, "right", "top", sleep=1.5, num_cpus=0.5)
    noop(spec, "bottom", "left", "right")
    register(run_api, "diamond", spec)
    final = wait(run_api, start(run_api, "diamond").name)
    assert final.state == RunState.STATE_SUCCEEDED
    nodes = {n.node_id: n for n in final.nodes}
    left, right = nodes["left"], nodes["right"]
    # the branches overlap in time: each started before the other ended
    assert left.start_time.ToNanoseconds() < right.end_time.ToNanoseconds()
    assert right.start_time.ToNanoseconds() < left.end_time.ToNanoseconds()
    assert nodes["bottom"].start_time.ToNanoseconds() >= max(
        left.end_time.ToNanoseconds(), right.end_time.ToNanoseconds()
    )


def test_request_id_makes_create_idempotent(run_api: Api) -> None:
    register(run_api, "idem", chain(2))
    first = start(run_api, "idem", request_id="same-request")
    second = start(run_api, "idem", request_id="same-request")
    assert first.name == second.name
    runs = run_api.runs.ListRuns(rpb.ListRunsRequest(pipeline="pipelines/idem")).runs
    assert [r.name for r in runs] == [first.name]
    wait(run_api, first.name)


def test_default_version_is_resolved_at_creation(run_api: Api) -> None:
    register(run_api, "pinned", chain(1))
    run = start(run_api, "pinned")
    register(run_api, "pinned", chain(2))  # a new default after the run was created
    final = wait(run_api, run.name)
    assert final.pipeline_version == "pipelines/pinned/versions/1"
    assert len(final.nodes) == 1
    pinned = run_api.runs.CreateRun(
        rpb.CreateRunRequest(run=run_pb2.Run(pipeline_version="pipelines/pinned/versions/1"))
    ).run
    assert pinned.pipeline == "pipelines/pinned"
    wait(run_api, pinned.name)


def test_bad_create_requests(run_api: Api) -> None:
    register(run_api, "bad", chain(1))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    details = expect_error(run_api.runs.CreateRun, rpb.CreateRunRequest(run=run_pb2.Run()), invalid)
    assert "run.pipeline" in details.violations
    run = run_pb2.Run(pipeline="pipelines/bad")
    run.parameters["nope"].number_value = 1
    details = expect_error(run_api.runs.CreateRun, rpb.CreateRunRequest(run=run), invalid)
    assert "run.parameters['nope']" in details.violations
    expect_error(
        run_api.runs.CreateRun,
        rpb.CreateRunRequest(run=run_pb2.Run(pipeline="pipelines/ghost")),
        grpc.StatusCode.NOT_FOUND,
    )
    expect_error(
        run_api.runs.CreateRun,
        rpb.CreateRunRequest(run=run_pb2.Run(pipeline_version="pipelines/bad/versions/7")),
        grpc.StatusCode.NOT_FOUND,
    )
    run_api.pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id="empty"))
    details = expect_error(
        run_api.runs.CreateRun,
        rpb.CreateRunRequest(run=run_pb2.Run(pipeline="pipelines/empty")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.reason == "PIPELINE_HAS_NO_VERSION"
    expect_error(
        run_api.runs.GetRun, rpb.GetRunRequest(name="runs/nope"), grpc.StatusCode.NOT_FOUND
    )
    expect_error(run_api.runs.ListRuns, rpb.ListRunsRequest(page_size=-1), invalid)


def _failing_spec(policy: pipeline_spec_pb2.FailurePolicy, *, slow: float) -> Spec:
    """``bad`` reads a file that is not there (fails at run time); ``slow`` is independent."""
    spec = Spec(failure_policy=policy)
    noop(spec, "root")
    bad = spec.nodes.add(id="bad", type="data_loader", depends_on=["root"])
    bad.params.update({"path": "missing.csv"})
    noop(spec, "after_bad", "bad")
    noop(spec, "slow", "root", sleep=slow)
    noop(spec, "after_slow", "slow")
    return spec


def test_fail_fast_cancels_everything_else(run_api: Api) -> None:
    register(
        run_api, "failfast", _failing_spec(pipeline_spec_pb2.FAILURE_POLICY_FAIL_FAST, slow=20)
    )
    final = wait(run_api, start(run_api, "failfast").name)
    assert final.state == RunState.STATE_FAILED
    assert states(final) == {
        "root": "STATE_SUCCEEDED",
        "bad": "STATE_FAILED",
        "after_bad": "STATE_SKIPPED",
        "slow": "STATE_CANCELLED",
        "after_slow": "STATE_CANCELLED",
    }
    assert final.error.node_id == "bad"
    assert "bad" in final.error.message


def test_impossible_node_under_fail_fast_fails_before_anything_starts(run_api: Api) -> None:
    spec = chain(2)
    noop(spec, "gpu", "n0", num_gpus=1)
    noop(spec, "after", "gpu")
    register(run_api, "impossible", spec)
    final = wait(run_api, start(run_api, "impossible").name)
    assert final.state == RunState.STATE_FAILED
    assert states(final) == {
        "n0": "STATE_CANCELLED",
        "n1": "STATE_CANCELLED",
        "gpu": "STATE_FAILED",
        "after": "STATE_SKIPPED",
    }
    assert all(n.attempt == 0 for n in final.nodes)


def test_continue_independent_finishes_other_branches(run_api: Api) -> None:
    register(
        run_api,
        "cont",
        _failing_spec(pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT, slow=1),
    )
    final = wait(run_api, start(run_api, "cont").name)
    assert final.state == RunState.STATE_FAILED
    assert states(final) == {
        "root": "STATE_SUCCEEDED",
        "bad": "STATE_FAILED",
        "after_bad": "STATE_SKIPPED",
        "slow": "STATE_SUCCEEDED",
        "after_slow": "STATE_SUCCEEDED",
    }


def test_gpu_node_fails_fast_naming_the_resource(run_api: Api) -> None:
    spec = Spec()
    noop(spec, "train", num_gpus=1)
    register(run_api, "gpu", spec)
    # Plain Ray would wait forever; the stream's 30 s deadline fails the test if raypipe does.
    final = wait(run_api, start(run_api, "gpu").name, timeout=30)
    assert final.state == RunState.STATE_FAILED
    node = final.nodes[0]
    assert node.state == NodeState.STATE_FAILED
    assert "train" in node.error.message
    assert "GPU" in node.error.message


def test_gpu_preferred_runs_on_cpu_and_says_so(run_api: Api) -> None:
    spec = Spec()
    node = noop(spec, "train", num_gpus=1)
    node.resources.gpu_policy = pipeline_spec_pb2.GPU_POLICY_PREFERRED
    register(run_api, "gpupref", spec)
    final = wait(run_api, start(run_api, "gpupref").name)
    assert final.state == RunState.STATE_SUCCEEDED
    assert any("CPU" in note for note in final.nodes[0].notes), final.nodes[0].notes


def test_data_loader_failure_keeps_type_message_and_traceback(run_api: Api) -> None:
    spec = Spec()
    spec.nodes.add(id="load", type="data_loader").params.update({"path": "missing.csv"})
    register(run_api, "loadfail", spec)
    final = wait(run_api, start(run_api, "loadfail").name)
    assert final.state == RunState.STATE_FAILED
    error = final.nodes[0].error
    assert error.type
    assert "missing.csv" in error.message
    assert "Traceback" in error.traceback
    assert final.error.node_id == "load"
    # It failed before its start report (1 s): the failure itself says where it ran.
    assert final.nodes[0].ray_node_id
    assert final.nodes[0].ray_task_id


def test_cancel_running_run(run_api: Api) -> None:
    register(run_api, "cancel", chain(4, sleep=30))
    run = start(run_api, "cancel")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for the first node to run
        current = run_api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
        if current.nodes[0].state == NodeState.STATE_RUNNING:
            break
        time.sleep(0.1)
    response = run_api.runs.CancelRun(rpb.CancelRunRequest(name=run.name)).run
    assert response.state in {RunState.STATE_CANCELLING, RunState.STATE_CANCELLED}
    final = wait(run_api, run.name, timeout=10)  # the stream's deadline: CANCELLED within 10 s
    assert final.state == RunState.STATE_CANCELLED
    assert final.nodes[0].state == NodeState.STATE_CANCELLED
    for node in final.nodes[1:]:  # later nodes never started
        assert node.state in {NodeState.STATE_CANCELLED, NodeState.STATE_SKIPPED}
        assert node.attempt == 0
    details = expect_error(
        run_api.runs.CancelRun,
        rpb.CancelRunRequest(name=run.name),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.reason == "RUN_ALREADY_ENDED"


def test_retry_reuses_succeeded_nodes(run_api: Api) -> None:
    register(run_api, "retry", chain(3, sleep=0.2))
    spec = chain(3, sleep=0.2)
    spec.nodes[2].params.update({"sleep_seconds": 30})
    register(run_api, "retry", spec)
    run = start(run_api, "retry")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = run_api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
        if current.nodes[2].state == NodeState.STATE_RUNNING:
            break
        time.sleep(0.1)
    run_api.runs.CancelRun(rpb.CancelRunRequest(name=run.name))
    first = wait(run_api, run.name)
    assert states(first)["n0"] == "STATE_SUCCEEDED"
    expect_error(
        run_api.runs.RetryRun, rpb.RetryRunRequest(name="runs/nope"), grpc.StatusCode.NOT_FOUND
    )
    retried = run_api.runs.RetryRun(rpb.RetryRunRequest(name=run.name)).run
    assert retried.retry_of == run.name
    assert retried.pipeline_version == first.pipeline_version
    # the retry is itself cancelled once its last node runs; what matters is what it reused
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = run_api.runs.GetRun(rpb.GetRunRequest(name=retried.name)).run
        if current.nodes[2].state == NodeState.STATE_RUNNING:
            break
        time.sleep(0.1)
    assert states(current)["n0"] == "STATE_CACHED"
    assert states(current)["n1"] == "STATE_CACHED"
    assert current.nodes[0].cached_from == run.name
    run_api.runs.CancelRun(rpb.CancelRunRequest(name=retried.name))
    wait(run_api, retried.name)


def test_only_failed_or_cancelled_runs_can_be_retried(run_api: Api) -> None:
    register(run_api, "done", chain(1))
    final = wait(run_api, start(run_api, "done").name)
    details = expect_error(
        run_api.runs.RetryRun,
        rpb.RetryRunRequest(name=final.name),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.reason == "RUN_NOT_RETRYABLE"


def test_retry_after_failure_executes_only_what_failed(run_api: Api) -> None:
    spec = Spec(failure_policy=pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT)
    noop(spec, "a")
    noop(spec, "b", "a")
    noop(spec, "gpu", "a", num_gpus=1)
    register(run_api, "retryfail", spec)
    first = wait(run_api, start(run_api, "retryfail").name)
    assert states(first) == {"a": "STATE_SUCCEEDED", "b": "STATE_SUCCEEDED", "gpu": "STATE_FAILED"}
    second = wait(run_api, run_api.runs.RetryRun(rpb.RetryRunRequest(name=first.name)).run.name)
    assert states(second) == {"a": "STATE_CACHED", "b": "STATE_CACHED", "gpu": "STATE_FAILED"}
    assert second.nodes[0].cached_from == first.name


def _watch(api: Api, name: str, sink: list[rpb.WatchRunResponse]) -> None:
    for response in api.runs.WatchRun(rpb.WatchRunRequest(name=name), timeout=60):
        sink.append(response)


def test_watch_from_two_clients_one_joining_late(run_api: Api) -> None:
    register(run_api, "watched", chain(4, sleep=0.5))
    run = start(run_api, "watched")
    early: list[rpb.WatchRunResponse] = []
    t = threading.Thread(target=_watch, args=(run_api, run.name, early))
    t.start()
    # The late watcher joins once the first node has finished, however long that takes on a
    # loaded machine (three more nodes of 0.5 s each are still to come).
    deadline = time.monotonic() + 60
    while True:
        now = run_api.runs.GetRun(rpb.GetRunRequest(name=run.name), timeout=30).run
        if now.nodes[0].state == NodeState.STATE_SUCCEEDED:
            break
        assert time.monotonic() < deadline, "the first node never finished"
        time.sleep(0.05)
    late: list[rpb.WatchRunResponse] = []
    _watch(run_api, run.name, late)
    t.join()
    for stream in (early, late):
        assert stream[0].event.type == run_pb2.RunEvent.TYPE_SNAPSHOT
        assert stream[-1].run.state == RunState.STATE_SUCCEEDED
        sequences = [r.event.sequence for r in stream[1:]]
        assert sequences == sorted(sequences)
        assert len(set(sequences)) == len(sequences)
    # the early watcher saw every node start and finish
    node_events = [
        (r.event.node_id, NodeState.Name(r.event.node_state))
        for r in early
        if r.event.type == run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED
    ]
    for i in range(4):
        assert (f"n{i}", "STATE_RUNNING") in node_events
        assert (f"n{i}", "STATE_SUCCEEDED") in node_events
    # the late watcher's snapshot already showed progress
    assert late[0].run.nodes[0].state == NodeState.STATE_SUCCEEDED


def test_stop_ends_watch_streams_at_once_with_unavailable(
    run_plane: ControlPlane, run_api: Api
) -> None:
    """A watcher must not hold the shutdown for its grace period: its stream ends with a
    status the SDK reconnects on, and the run itself goes on in Ray."""
    register(run_api, "watched-at-stop", chain(1, sleep=3))
    run = start(run_api, "watched-at-stop")
    received: list[rpb.WatchRunResponse] = []
    ended: list[ErrorDetails] = []

    def watch() -> None:
        try:
            for response in run_api.runs.WatchRun(rpb.WatchRunRequest(name=run.name), timeout=60):
                received.append(response)
        except grpc.RpcError as exc:
            ended.append(error_details(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    for _ in range(500):
        if received:
            break
        time.sleep(0.01)
    assert received
    assert received[0].event.type == run_pb2.RunEvent.TYPE_SNAPSHOT
    stopping = threading.Thread(target=run_plane.stop, kwargs={"grace": 60})
    stopping.start()
    watcher.join(timeout=30)
    stopping.join(timeout=30)
    assert not stopping.is_alive(), "stop() waited on the stream"
    # Without the notifier's close the stream would end with the run: SUCCEEDED, no error.
    assert [(e.code, e.reason) for e in ended] == [
        (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    ], received[-1].run.state
    assert all(r.run.state not in TERMINAL for r in received if r.HasField("run"))


def test_watch_filtered_to_run_state_changes(run_api: Api) -> None:
    """A watcher that asks for run-state changes gets the snapshot and those events only, the
    same ones (sequence for sequence) a full watcher gets, each with the complete run."""
    register(run_api, "filtered", chain(20))
    run = start(run_api, "filtered")
    full: list[rpb.WatchRunResponse] = []
    t = threading.Thread(target=_watch, args=(run_api, run.name, full))
    t.start()
    only_run = list(
        run_api.runs.WatchRun(
            rpb.WatchRunRequest(
                name=run.name, event_types=[run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED]
            ),
            timeout=60,
        )
    )
    t.join()
    assert only_run[0].event.type == run_pb2.RunEvent.TYPE_SNAPSHOT
    rest = only_run[1:]
    assert {r.event.type for r in rest} <= {run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED}
    assert all(r.HasField("run") for r in only_run)
    final = only_run[-1].run
    assert final.state == RunState.STATE_SUCCEEDED
    assert set(states(final).values()) == {"STATE_SUCCEEDED"}
    assert len(final.nodes) == 20
    assert all(n.HasField("end_time") and "duration_seconds" in n.metrics for n in final.nodes)
    assert final == full[-1].run
    # Every run-state change after the snapshot, none missing: those the full stream had
    # after the filtered stream's snapshot.
    after = only_run[0].event.sequence
    expected = [
        r.event.sequence
        for r in full
        if r.event.type == run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED and r.event.sequence > after
    ]
    assert [r.event.sequence for r in rest] == expected
    assert expected[-1] == full[-1].event.sequence
    assert len(full) > 40  # the full stream had every node's events


def test_watch_filtered_to_other_events_still_ends_with_the_run(run_api: Api) -> None:
    """noop nodes report no progress: a watcher of progress only gets the snapshot, and its
    stream ends when the run does rather than waiting forever."""
    register(run_api, "progress-only", chain(3, sleep=0.2))
    run = start(run_api, "progress-only")
    stream = list(
        run_api.runs.WatchRun(
            rpb.WatchRunRequest(name=run.name, event_types=[run_pb2.RunEvent.TYPE_NODE_PROGRESS]),
            timeout=30,
        )
    )
    assert [r.event.type for r in stream] == [run_pb2.RunEvent.TYPE_SNAPSHOT]
    assert wait(run_api, run.name).state == RunState.STATE_SUCCEEDED


def test_watch_refuses_unknown_event_types(run_api: Api) -> None:
    register(run_api, "bad-watch", chain(1))
    run = start(run_api, "bad-watch")
    details = expect_error(
        lambda r: list(run_api.runs.WatchRun(r, timeout=30)),
        rpb.WatchRunRequest(
            name=run.name,
            event_types=[run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED, 0, 99],  # type: ignore[list-item]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(details.violations) == {"event_types[1]", "event_types[2]"}
    assert "0 is not an event type" in details.violations["event_types[1]"]
    assert "TYPE_RUN_STATE_CHANGED" in details.violations["event_types[2]"]
    wait(run_api, run.name)


def _events(api: Api, name: str) -> list[rpb.WatchRunResponse]:
    return list(api.runs.WatchRun(rpb.WatchRunRequest(name=name), timeout=60))


def test_run_survives_kill9_of_the_server(server_process: ServerProcess) -> None:
    api = Api.connect(server_process.start())
    register(api, "survivor", chain(5, sleep=1.0))
    run = start(api, "survivor")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
        if current.nodes[1].state == NodeState.STATE_RUNNING:
            break
        time.sleep(0.05)
    api.channel.close()
    server_process.kill9()
    time.sleep(2.5)  # nodes finish while no control plane is there to see it
    api = Api.connect(server_process.start())
    final = wait(api, run.name)
    assert final.state == RunState.STATE_SUCCEEDED
    for node in final.nodes:
        assert node.state == NodeState.STATE_SUCCEEDED
        assert node.start_time.seconds
        assert node.end_time.seconds
    history = _events(api, run.name)
    sequences = [r.event.sequence for r in history[1:]]
    assert sequences == list(range(1, len(sequences) + 1)) or not sequences
    # the snapshot's sequence covers the whole history: nothing was lost while down
    events = [r.event for r in history]
    assert events[0].sequence >= 11  # RUNNING + 5 x (RUNNING, SUCCEEDED) + SUCCEEDED
    api.channel.close()


def test_list_runs_filters(run_api: Api) -> None:
    register(run_api, "lista", chain(1))
    register(run_api, "listb", chain(1))
    a = wait(run_api, start(run_api, "lista", labels={"team": "ml"}).name)
    b = wait(run_api, start(run_api, "listb").name)
    by_pipeline = run_api.runs.ListRuns(rpb.ListRunsRequest(pipeline="pipelines/lista")).runs
    assert [r.name for r in by_pipeline] == [a.name]
    by_state = run_api.runs.ListRuns(
        rpb.ListRunsRequest(states=[RunState.STATE_SUCCEEDED], page_size=100)
    ).runs
    assert {a.name, b.name} <= {r.name for r in by_state}
    by_label = run_api.runs.ListRuns(rpb.ListRunsRequest(filter='labels.team = "ml"')).runs
    assert [r.name for r in by_label] == [a.name]
    newest_first = run_api.runs.ListRuns(rpb.ListRunsRequest(page_size=2)).runs
    assert (
        newest_first[0].create_time.ToNanoseconds() >= newest_first[1].create_time.ToNanoseconds()
    )


def test_fast_nodes_still_report_every_state_change(run_api: Api) -> None:
    """Nodes over in milliseconds report RUNNING with their result (no actor call of their
    own): watchers still see RUNNING, with its real start time, before the final state."""
    spec = _failing_spec(pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT, slow=0)
    register(run_api, "fast", spec)
    run = start(run_api, "fast")
    stream = _events(run_api, run.name)
    assert stream[-1].run.state == RunState.STATE_FAILED
    changes: dict[str, list[run_pb2.RunEvent]] = {}
    for response in stream:
        if response.event.type == run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED:
            changes.setdefault(response.event.node_id, []).append(response.event)
    seen = {n: [NodeState.Name(e.node_state) for e in evs] for n, evs in changes.items()}
    assert seen["root"] == ["STATE_RUNNING", "STATE_SUCCEEDED"]
    assert seen["slow"] == ["STATE_RUNNING", "STATE_SUCCEEDED"]
    assert seen["bad"] == ["STATE_RUNNING", "STATE_FAILED"], "a fast failure too"
    assert seen["after_bad"] == ["STATE_SKIPPED"], "never ran, never RUNNING"
    final = {n.node_id: n for n in stream[-1].run.nodes}
    for node_id in ("root", "slow", "bad"):
        node = final[node_id]
        assert node.attempt == 1
        assert 0 < node.start_time.ToNanoseconds() <= node.end_time.ToNanoseconds(), node_id
    assert final["root"].ray_task_id
    # a noop's output (null) lives in its URI, not in a file
    (output,) = [a for a in final["root"].artifacts if a.name == "output"]
    assert output.uri == "data:application/json,null"


def test_run_tasks_are_visible_in_the_ray_state_api(run_api: Api, ray_head: LocalHead) -> None:
    """`ray list tasks`: each node is a task named {pipeline}/{node}; the run's record holds
    each node's Ray task id, and the run's own driving call is the task `run/{run_id}`."""
    from ray.util.state import list_tasks

    register(run_api, "visible", chain(3))
    run = start(run_api, "visible")
    final = wait(run_api, run.name)
    assert final.state == RunState.STATE_SUCCEEDED
    run_id = run.name.removeprefix("runs/")
    recorded = {n.ray_task_id: f"visible/{n.node_id}" for n in final.nodes}
    deadline = time.monotonic() + 30  # task events reach the State API about once a second
    listed: dict[str, str] = {}
    while time.monotonic() < deadline:
        for name in (*recorded.values(), f"run/{run_id}"):
            # The session's cluster by address: other local clusters may be running too.
            for task in list_tasks(
                address=ray_head.address,
                filters=[("name", "=", name)],
                raise_on_missing_output=False,
            ):
                listed[task.task_id] = task.name
        if all(listed.get(task_id) == name for task_id, name in recorded.items()) and (
            f"run/{run_id}" in listed.values()
        ):
            break
        time.sleep(0.5)
    for task_id, name in recorded.items():
        assert listed.get(task_id) == name, (name, task_id, listed)
    assert f"run/{run_id}" in listed.values()


def test_cache_reuses_the_output_of_an_equal_node_across_runs(run_api: Api, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")

    def cached_spec(tick_version: str = "") -> Spec:
        spec = Spec()
        load = spec.nodes.add(id="load", type="data_loader")
        load.params.update({"path": "data.csv"})
        load.cache.enabled = True
        tick = noop(spec, "tick", "load")
        tick.cache.enabled = True
        tick.cache.cache_version = tick_version
        noop(spec, "after", "tick")
        return spec

    register(run_api, "cached", cached_spec())
    first = wait(run_api, start(run_api, "cached").name)
    assert states(first) == dict.fromkeys(("load", "tick", "after"), "STATE_SUCCEEDED")
    keys = {n.node_id: n.cache_key for n in first.nodes}
    assert keys["load"]
    assert keys["tick"]
    assert not keys["after"]

    second = wait(run_api, start(run_api, "cached").name)
    assert states(second) == {
        "load": "STATE_CACHED",
        "tick": "STATE_CACHED",
        "after": "STATE_SUCCEEDED",
    }
    by_id = {n.node_id: n for n in second.nodes}
    assert by_id["load"].cached_from == first.name
    assert {n.node_id: n.cache_key for n in second.nodes} == keys
    assert by_id["after"].metrics["rows_in"] == 2, "the reused output fed the next node"

    # The stored output is gone: the node runs again rather than failing the run.
    (output,) = [a for a in by_id["load"].artifacts if a.name == "output"]
    Path(output.uri).unlink()
    third = wait(run_api, start(run_api, "cached").name)
    assert states(third)["load"] == "STATE_SUCCEEDED"
    assert states(third)["tick"] == "STATE_CACHED"

    # A new cache_version is a new key: that node (and what depends on it) runs again.
    register(run_api, "cached", cached_spec("v2"))
    fourth = wait(run_api, start(run_api, "cached").name)
    assert states(fourth) == {
        "load": "STATE_CACHED",
        "tick": "STATE_SUCCEEDED",
        "after": "STATE_SUCCEEDED",
    }
    assert {n.node_id: n.cached_from for n in fourth.nodes}["load"] == third.name


def test_outputs_are_written_only_when_a_run_does_not_succeed(run_api: Api, tmp_path: Path) -> None:
    """keep_outputs on_failure (the default): a run that succeeds writes no node output; one
    that fails writes those of its succeeded nodes before it ends, and RetryRun reuses them."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")

    def two_loads(second: str) -> Spec:
        spec = Spec()
        spec.nodes.add(id="load", type="data_loader").params.update({"path": "data.csv"})
        after = spec.nodes.add(id="second", type="data_loader", depends_on=["load"])
        after.params.update({"path": second})
        return spec

    register(run_api, "kept", two_loads("data.csv"))
    ok = wait(run_api, start(run_api, "kept").name)
    assert states(ok) == {"load": "STATE_SUCCEEDED", "second": "STATE_SUCCEEDED"}
    assert all(not n.artifacts for n in ok.nodes), "a run that succeeded wrote nothing"

    register(run_api, "kept", two_loads("missing.csv"))
    failed = wait(run_api, start(run_api, "kept").name)
    assert states(failed) == {"load": "STATE_SUCCEEDED", "second": "STATE_FAILED"}
    (output,) = failed.nodes[0].artifacts
    assert output.name == "output"
    assert output.uri.endswith("/nodes/load/output.parquet")
    assert Path(output.uri).stat().st_size == output.size_bytes

    (tmp_path / "missing.csv").write_text("c\n5\n")
    retried = run_api.runs.RetryRun(rpb.RetryRunRequest(name=failed.name)).run
    final = wait(run_api, retried.name)
    assert states(final) == {"load": "STATE_CACHED", "second": "STATE_SUCCEEDED"}
    assert final.nodes[0].cached_from == failed.name


def test_keep_outputs_always_writes_every_output(ray_head: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_outputs must be one of on_failure, always"):
        ServerConfig(data_dir=tmp_path, keep_outputs="sometimes")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    plane = ControlPlane(
        ServerConfig(
            data_dir=tmp_path / "data",
            port=0,
            ray_address=ray_head.address,  # type: ignore[attr-defined]
            data_roots=(tmp_path,),
            keep_outputs="always",
        )
    )
    api = Api.connect(f"127.0.0.1:{plane.start()}")
    try:
        spec = Spec()
        spec.nodes.add(id="load", type="data_loader").params.update({"path": "data.csv"})
        register(api, "always", spec)
        final = wait(api, start(api, "always").name)
        assert states(final) == {"load": "STATE_SUCCEEDED"}
        (output,) = final.nodes[0].artifacts
        assert Path(output.uri).is_file(), "written although the run succeeded"
    finally:
        api.channel.close()
        plane.stop(grace=1)


def test_each_node_records_the_ray_node_it_ran_on(run_api: Api) -> None:
    """NodeExecution.ray_node_id and ray_node_address name a node of the cluster, as Ray's own
    node table does."""
    import ray

    spec = Spec()
    spec.nodes.add(id="first", type="noop")
    spec.nodes.add(id="second", type="noop", depends_on=["first"]).params.update(
        {"sleep_seconds": 0.5}
    )
    register(run_api, "placed", spec)
    done = wait(run_api, start(run_api, "placed").name, timeout=120)
    assert done.state == run_pb2.Run.STATE_SUCCEEDED
    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    for node in done.nodes:
        assert node.ray_node_id in nodes, (node.node_id, node.ray_node_id, nodes)
        assert node.ray_node_address == nodes[node.ray_node_id]
