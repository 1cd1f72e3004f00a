"""Partial reads of a run's record, and the whole-run copies kept from them.

The control plane records a big run's events in batches, and each WatchRun stream resends the
run after every batch: both read only the nodes a batch touched and keep the rest in a
:class:`~control_plane.runs.RunView`. These tests check that what they keep is what is stored.
"""

from __future__ import annotations

import threading
import time

from control_plane.runs.events import RunView, touched_nodes
from control_plane.server import ControlPlane
from control_plane.storage.repository import RunChange
from control_plane.storage.sql import SqlRepository
from raypipe.v1 import run_pb2
from raypipe.v1 import run_service_pb2 as rpb
from tests.integration.conftest import Api
from tests.integration.test_runs import Spec, noop, register, start, wait
from tests.integration.test_storage_runs import new_run, repo  # noqa: F401  (fixture)

RunState = run_pb2.Run.State
NodeState = run_pb2.NodeExecution.State


def _node(node_id: str, state: int, **metrics: float) -> run_pb2.NodeExecution:
    node = run_pb2.NodeExecution(node_id=node_id, state=state)  # type: ignore[arg-type]
    node.metrics.update(metrics)
    return node


def test_partial_reads_return_the_header_and_only_the_named_nodes(repo: SqlRepository) -> None:  # noqa: F811
    repo.create_run(new_run("r1", node_ids=["a", "b", "c", "d"]))
    whole = repo.get_run("r1")
    assert [n.node_id for n in whole.nodes] == ["a", "b", "c", "d"]

    partial = repo.get_run("r1", node_ids={"d", "b"})
    assert [n.node_id for n in partial.nodes] == ["b", "d"]  # spec order, not the set's
    header, whole_header = run_pb2.Run(), run_pb2.Run()
    header.CopyFrom(partial)
    whole_header.CopyFrom(whole)
    del header.nodes[:], whole_header.nodes[:]
    assert header == whole_header
    assert list(repo.get_run("r1", node_ids=set()).nodes) == []
    assert list(repo.get_run("r1", node_ids={"nope"}).nodes) == []

    change = RunChange(
        state=RunState.STATE_RUNNING,
        node_updates=[_node("c", NodeState.STATE_SUCCEEDED, rows_out=3.0)],
        events=[run_pb2.RunEvent(node_id="c", message="c succeeded")],
    )
    after, events = repo.record("r1", change, node_ids={"c"})
    assert after.state == RunState.STATE_RUNNING
    assert [(n.node_id, n.state) for n in after.nodes] == [("c", NodeState.STATE_SUCCEEDED)]
    assert after.nodes[0].metrics["rows_out"] == 3.0
    assert len(events) == 1
    # the default still returns the whole run
    full, _ = repo.record("r1", RunChange(events=[run_pb2.RunEvent(message="x")]))
    assert [n.node_id for n in full.nodes] == ["a", "b", "c", "d"]


def test_a_view_kept_from_partial_reads_equals_the_stored_run(repo: SqlRepository) -> None:  # noqa: F811
    repo.create_run(new_run("r2", node_ids=[f"n{i}" for i in range(6)]))
    view = RunView(repo.get_run("r2"))
    batches = [
        (RunState.STATE_RUNNING, ["n0", "n3"], NodeState.STATE_RUNNING),
        (None, ["n0", "n3", "n5"], NodeState.STATE_SUCCEEDED),
        (RunState.STATE_FAILED, ["n1"], NodeState.STATE_FAILED),
    ]
    for i, (state, ids, node_state) in enumerate(batches):
        change = RunChange(
            state=state,
            error=run_pb2.ExecutionError(message="boom")
            if state == RunState.STATE_FAILED
            else None,
            node_updates=[_node(n, node_state, step=float(i)) for n in ids],
            events=[run_pb2.RunEvent(node_id=n) for n in ids],
        )
        partial, _ = repo.record("r2", change, node_ids=set(ids))
        assert view.update(partial) == repo.get_run("r2")
    # a header field that is cleared in storage is cleared in the view too
    partial, _ = repo.record(
        "r2", RunChange(error=run_pb2.ExecutionError(), events=[]), node_ids=set()
    )
    assert not view.update(partial).HasField("error")
    assert view.run == repo.get_run("r2")


def test_touched_nodes_skips_run_events() -> None:
    assert touched_nodes(["a", "", "b", "a"]) == {"a", "b"}


def _watch(api: Api, name: str, sink: list[rpb.WatchRunResponse]) -> None:
    sink.extend(api.runs.WatchRun(rpb.WatchRunRequest(name=name), timeout=120))


def test_watch_streams_keep_the_whole_run_equal_to_get_run(run_api: Api) -> None:
    # A fan-out wide enough that its events arrive in several batches, joined by one node.
    spec = Spec()
    for i in range(40):
        noop(spec, f"w{i}", sleep=0.05 * (i % 4))
    noop(spec, "join", *[f"w{i}" for i in range(40)])
    register(run_api, "wide", spec)
    run = start(run_api, "wide")
    early: list[rpb.WatchRunResponse] = []
    watcher = threading.Thread(target=_watch, args=(run_api, run.name, early))
    watcher.start()
    late: list[rpb.WatchRunResponse] = []
    _watch(run_api, run.name, late)
    watcher.join()
    stored = run_api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
    assert stored.state == RunState.STATE_SUCCEEDED
    for stream in (early, late):
        with_run = [r for r in stream if r.HasField("run")]
        assert with_run[-1].run == stored
        # every node's final state reached the stream's copy through partial reads
        assert {n.node_id: n.state for n in with_run[-1].run.nodes} == {
            n.node_id: NodeState.STATE_SUCCEEDED for n in stored.nodes
        }
    batches = sum(1 for r in early if r.HasField("run"))
    assert batches >= 3, "the run's events should have come in several batches"


def _until_running(api: Api, name: str, node_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.runs.GetRun(rpb.GetRunRequest(name=name)).run
        if any(n.node_id == node_id and n.state == NodeState.STATE_RUNNING for n in run.nodes):
            return
        time.sleep(0.05)
    raise AssertionError(f"{node_id} of {name} never ran")


def _sequence_of(events: list[run_pb2.RunEvent]) -> dict[tuple[str, int], int]:
    """(node id, node state) -> the sequence number of its first state-change event."""
    first: dict[tuple[str, int], int] = {}
    for event in events:
        if event.type == run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED:
            first.setdefault((event.node_id, event.node_state), event.sequence)
    return first


def test_no_node_is_reported_running_before_its_upstream_nodes_ended(
    run_api: Api, run_plane: ControlPlane
) -> None:
    # Reused nodes end when their load task is harvested, while the node after them reports
    # RUNNING from its own task: the second must never be stored before the first.
    spec = Spec()
    for branch in range(4):
        noop(spec, f"a{branch}")
        noop(spec, f"b{branch}", f"a{branch}")
    noop(spec, "slow", *[f"b{i}" for i in range(4)], sleep=30)
    register(run_api, "ordered", spec)
    store = run_plane.repository
    assert store is not None
    for attempt in range(3):
        first = start(run_api, "ordered")
        _until_running(run_api, first.name, "slow")
        run_api.runs.CancelRun(rpb.CancelRunRequest(name=first.name))
        wait(run_api, first.name)
        retried = run_api.runs.RetryRun(rpb.RetryRunRequest(name=first.name)).run
        _until_running(run_api, retried.name, "slow")
        run_api.runs.CancelRun(rpb.CancelRunRequest(name=retried.name))
        wait(run_api, retried.name)
        for name, done in (
            (first.name, NodeState.STATE_SUCCEEDED),
            (retried.name, NodeState.STATE_CACHED),
        ):
            seq = _sequence_of(store.list_events(name.removeprefix("runs/")))
            running = seq[("slow", NodeState.STATE_RUNNING)]
            for branch in range(4):
                for upstream in (f"a{branch}", f"b{branch}"):
                    assert seq[(upstream, done)] < running, (attempt, name, upstream)
