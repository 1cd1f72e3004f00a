"""SqlRepository's runs, node records and events, DeletePipeline's guard, and crash safety,
against a SQLite file and PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from control_plane.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from control_plane.storage.repository import LabelTerm, NewRun, RunChange, RunFilter
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from tests.integration.test_storage import REPO_ROOT, add_pipeline, add_version, field_of

Run = run_pb2.Run
Node = run_pb2.NodeExecution
Event = run_pb2.RunEvent
NODES = ("load", "train", "save")


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    repository = open_repository(db_url)
    add_pipeline(repository, "p")
    add_version(repository, "p")
    add_version(repository, "p")
    yield repository
    repository.close()


def new_run(run_id: str, **overrides: object) -> NewRun:
    fields: dict[str, object] = {
        "run_id": run_id,
        "pipeline_id": "p",
        "version_number": 1,
        "parameters": {},
        "node_ids": NODES,
    }
    fields.update(overrides)
    return NewRun(**fields)  # type: ignore[arg-type]


def run_ids(runs: list[run_pb2.Run]) -> list[str]:
    return [r.name.removeprefix("runs/") for r in runs]


# --- create and get -----------------------------------------------------------------------------
def test_create_run(repo: SqlRepository) -> None:
    scheduled = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    run, created = repo.create_run(
        new_run(
            "r1",
            version_number=2,
            parameters={"lr": 0.1, "epochs": 3, "name": "x", "tags": ["a", 1], "on": True},
            display_name="nightly",
            labels={"team": "ml"},
            schedule="schedules/nightly",
            scheduled_time=scheduled,
            retry_of="r0",
        )
    )
    assert created
    assert run.name == "runs/r1"
    assert run.pipeline == "pipelines/p"
    assert run.pipeline_version == "pipelines/p/versions/2"
    assert run.state == Run.STATE_PENDING
    assert [(n.node_id, n.state, n.attempt) for n in run.nodes] == [
        (node_id, Node.STATE_PENDING, 0) for node_id in NODES
    ]
    assert {k: v.WhichOneof("kind") for k, v in run.parameters.items()} == {
        "lr": "number_value",
        "epochs": "number_value",
        "name": "string_value",
        "tags": "list_value",
        "on": "bool_value",
    }
    assert run.parameters["lr"].number_value == 0.1
    assert (run.display_name, dict(run.labels)) == ("nightly", {"team": "ml"})
    assert run.schedule == "schedules/nightly"
    assert run.scheduled_time.ToDatetime(UTC) == scheduled
    assert run.retry_of == "runs/r0"
    assert run.create_time == run.update_time
    assert not run.HasField("start_time")
    assert not run.HasField("error")
    assert repo.get_run("r1") == run


def test_get_missing_run(repo: SqlRepository) -> None:
    with pytest.raises(NotFoundError) as caught:
        repo.get_run("nope")
    assert caught.value.reason == "RUN_NOT_FOUND"
    assert "runs/nope" in caught.value.message
    for call in (
        lambda: repo.list_events("nope"),
        lambda: repo.engine_cursor("nope"),
        lambda: repo.record("nope", RunChange(state=Run.STATE_RUNNING)),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_run_of_a_missing_version_is_refused(repo: SqlRepository) -> None:
    with pytest.raises(NotFoundError) as caught:
        repo.create_run(new_run("r1", version_number=9))
    assert caught.value.reason == "PIPELINE_VERSION_NOT_FOUND"
    with pytest.raises(NotFoundError):
        repo.create_run(new_run("r2", pipeline_id="nope"))


def test_duplicate_run_id(repo: SqlRepository) -> None:
    repo.create_run(new_run("r1"))
    with pytest.raises(AlreadyExistsError):
        repo.create_run(new_run("r1"))


def test_request_id_makes_create_idempotent(repo: SqlRepository) -> None:
    first, created = repo.create_run(new_run("r1", request_id="req-1"))
    assert created
    again, created = repo.create_run(new_run("r2", request_id="req-1"))
    assert (again, created) == (first, False)
    with pytest.raises(NotFoundError):
        repo.get_run("r2")
    # Runs without a request_id never collide on it.
    repo.create_run(new_run("r3"))
    repo.create_run(new_run("r4"))


def test_request_id_under_a_race(repo: SqlRepository) -> None:
    start = threading.Barrier(10)

    def create(i: int) -> tuple[str, bool]:
        start.wait()
        run, created = repo.create_run(new_run(f"r{i}", request_id="same"))
        return run.name, created

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(create, range(10)))
    assert len({name for name, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_a_schedule_fires_once_per_time(repo: SqlRepository) -> None:
    at = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    repo.create_run(new_run("r1", schedule="schedules/s", scheduled_time=at))
    with pytest.raises(AlreadyExistsError) as caught:
        repo.create_run(new_run("r2", schedule="schedules/s", scheduled_time=at))
    assert caught.value.reason == "RUN_ALREADY_SCHEDULED"
    # The same instant written in another zone is the same time.
    with pytest.raises(AlreadyExistsError):
        repo.create_run(
            new_run(
                "r3",
                schedule="schedules/s",
                scheduled_time=at.astimezone(datetime.now().astimezone().tzinfo),
            )
        )
    repo.create_run(new_run("r4", schedule="schedules/s", scheduled_time=at + timedelta(hours=1)))
    repo.create_run(new_run("r5", schedule="schedules/other", scheduled_time=at))


# --- record and events --------------------------------------------------------------------------
def test_record_applies_a_change_atomically(repo: SqlRepository) -> None:
    created, _ = repo.create_run(new_run("r1"))
    started = datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=UTC)
    running = Node(node_id="train", state=Node.STATE_RUNNING, attempt=1, ray_task_id="t1")
    running.start_time.FromDatetime(started)
    run, events = repo.record(
        "r1",
        RunChange(
            state=Run.STATE_RUNNING,
            start_time=started,
            node_updates=[running],
            events=[
                Event(type=Event.TYPE_RUN_STATE_CHANGED, run_state=Run.STATE_RUNNING),
                Event(type=Event.TYPE_NODE_STATE_CHANGED, node_id="train"),
            ],
            engine_cursor=7,
            labels={"k": "v"},
        ),
    )
    assert run.state == Run.STATE_RUNNING
    assert run.start_time.ToDatetime(UTC) == started
    assert [n.node_id for n in run.nodes] == list(NODES)
    assert run.nodes[1] == running
    assert run.nodes[0] == created.nodes[0]
    assert dict(run.labels) == {"k": "v"}
    assert run.update_time.ToDatetime() >= created.update_time.ToDatetime()
    assert [e.sequence for e in events] == [1, 2]
    assert all(e.HasField("time") for e in events)
    assert repo.get_run("r1") == run
    assert repo.engine_cursor("r1") == 7
    assert repo.list_events("r1") == events

    error = run_pb2.ExecutionError(node_id="train", type="builtins.ValueError", message="bad")
    run, _ = repo.record("r1", RunChange(state=Run.STATE_FAILED, end_time=started, error=error))
    assert run.error == error
    assert run.labels["k"] == "v"  # fields left None stay
    assert repo.engine_cursor("r1") == 7


def test_unknown_node_rolls_the_whole_change_back(repo: SqlRepository) -> None:
    before, _ = repo.create_run(new_run("r1"))
    with pytest.raises(InvalidArgumentError) as caught:
        repo.record(
            "r1",
            RunChange(
                state=Run.STATE_RUNNING,
                node_updates=[Node(node_id="load", state=Node.STATE_RUNNING), Node(node_id="zzz")],
                events=[Event(type=Event.TYPE_RUN_STATE_CHANGED)],
            ),
        )
    assert field_of(caught.value) == "node_updates[1].node_id"
    assert "zzz" in caught.value.message
    assert repo.get_run("r1") == before
    assert repo.list_events("r1") == []


def test_event_sequences_continue_without_gaps(repo: SqlRepository) -> None:
    repo.create_run(new_run("r1"))
    repo.create_run(new_run("r2"))
    when = datetime(2026, 1, 1, tzinfo=UTC)
    given = Event(type=Event.TYPE_NODE_PROGRESS, node_id="train", message="epoch 1")
    given.time.FromDatetime(when)
    given.metrics["loss"] = 0.5
    _, first = repo.record("r1", RunChange(events=[given, given]))
    _, none = repo.record("r1", RunChange(state=Run.STATE_RUNNING))
    _, second = repo.record("r1", RunChange(events=[given] * 3))
    _, other = repo.record("r2", RunChange(events=[given]))
    assert [e.sequence for e in first + none + second] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in other] == [1]
    assert given.sequence == 0  # the caller's messages are not modified
    stored = repo.list_events("r1")
    assert [e.sequence for e in stored] == [1, 2, 3, 4, 5]
    assert stored[0].time.ToDatetime(UTC) == when
    assert stored[0].metrics["loss"] == 0.5
    assert [e.sequence for e in repo.list_events("r1", after_sequence=3)] == [4, 5]
    assert repo.list_events("r1", after_sequence=5) == []


def test_concurrent_records_of_one_run_take_turns(repo: SqlRepository) -> None:
    repo.create_run(new_run("r1"))
    start = threading.Barrier(20)

    def record(i: int) -> list[int]:
        start.wait()
        node = Node(node_id=NODES[i % 3], state=Node.STATE_RUNNING, attempt=i)
        _, events = repo.record(
            "r1", RunChange(node_updates=[node], events=[Event(message=str(i))] * 2)
        )
        return [e.sequence for e in events]

    with ThreadPoolExecutor(20) as pool:
        batches = list(pool.map(record, range(20)))
    assert all(b == [b[0], b[0] + 1] for b in batches)
    assert sorted(s for b in batches for s in b) == list(range(1, 41))
    assert [e.sequence for e in repo.list_events("r1")] == list(range(1, 41))


# --- listing ------------------------------------------------------------------------------------
def test_list_runs_filters_and_pages(repo: SqlRepository) -> None:
    add_pipeline(repo, "q")
    add_version(repo, "q")
    repo.create_run(new_run("a", labels={"team": "ml"}))
    repo.create_run(new_run("b", version_number=2, schedule="s", scheduled_time=datetime.now(UTC)))
    repo.create_run(new_run("c", pipeline_id="q", display_name="x"))
    repo.create_run(new_run("d", labels={"team": "data"}))
    repo.record("d", RunChange(state=Run.STATE_SUCCEEDED))

    def ids(**fields: object) -> list[str]:
        page = repo.list_runs(page_size=0, page_token="", filter=RunFilter(**fields))  # type: ignore[arg-type]
        return run_ids(page.items)

    assert ids() == ["d", "c", "b", "a"]
    assert ids(pipeline_id="p") == ["d", "b", "a"]
    assert ids(pipeline_id="p", version_number=2) == ["b"]
    assert ids(states=(Run.STATE_SUCCEEDED,)) == ["d"]
    assert ids(states=(Run.STATE_PENDING, Run.STATE_RUNNING)) == ["c", "b", "a"]
    assert ids(schedule="schedules/s") == ids(schedule="s") == ["b"]
    assert ids(terms=(LabelTerm("labels.team", ":*"),)) == ["d", "a"]
    assert ids(terms=(LabelTerm("display_name", "=", "x"),)) == ["c"]

    listed = repo.list_runs(page_size=3, page_token="", filter=RunFilter())
    assert [len(r.nodes) for r in listed.items] == [3, 3, 3]
    assert listed.items[0] == repo.get_run("d")
    rest = repo.list_runs(page_size=3, page_token=listed.next_page_token, filter=RunFilter())
    assert (run_ids(rest.items), rest.next_page_token) == (["a"], "")
    # Without the node records: the same runs and pages, each run less its nodes.
    bare = repo.list_runs(page_size=3, page_token="", filter=RunFilter(), omit_nodes=True)
    assert bare.next_page_token == listed.next_page_token
    expected = [Run(), Run(), Run()]
    for want, run in zip(expected, listed.items, strict=True):
        want.CopyFrom(run)
        del want.nodes[:]
    assert list(bare.items) == expected
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_runs(
            page_size=3, page_token=listed.next_page_token, filter=RunFilter(pipeline_id="p")
        )
    assert field_of(caught.value) == "page_token"
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_runs(page_size=-5, page_token="", filter=RunFilter())
    assert field_of(caught.value) == "page_size"


def test_active_runs_oldest_first(repo: SqlRepository) -> None:
    for run_id in ("a", "b", "c", "d", "e"):
        repo.create_run(new_run(run_id))
    repo.record("b", RunChange(state=Run.STATE_RUNNING))
    repo.record("c", RunChange(state=Run.STATE_CANCELLING))
    repo.record("d", RunChange(state=Run.STATE_CANCELLED))
    repo.record("e", RunChange(state=Run.STATE_FAILED))
    assert repo.active_run_ids() == ["a", "b", "c"]
    assert repo.engine_cursor("a") == 0


# --- delete -------------------------------------------------------------------------------------
def test_delete_pipeline_waits_for_active_runs(repo: SqlRepository) -> None:
    repo.create_run(new_run("r1"))
    repo.create_run(new_run("r2", version_number=2))
    with pytest.raises(FailedPreconditionError) as caught:
        repo.delete_pipeline("p", force=False)
    assert caught.value.reason == "PIPELINE_IN_USE"
    assert "2 active runs" in caught.value.message
    repo.record("r1", RunChange(state=Run.STATE_SUCCEEDED))
    with pytest.raises(FailedPreconditionError) as caught:
        repo.delete_pipeline("p", force=False)
    assert "1 active run " in caught.value.message
    repo.record("r2", RunChange(state=Run.STATE_CANCELLED))
    repo.delete_pipeline("p", force=False)
    with pytest.raises(NotFoundError):
        repo.get_pipeline("p")
    with pytest.raises(NotFoundError):
        repo.delete_pipeline("p", force=False)


def test_forced_delete_keeps_run_history(repo: SqlRepository) -> None:
    run, _ = repo.create_run(new_run("r1"))
    repo.record("r1", RunChange(events=[Event(message="x")]))
    repo.delete_pipeline("p", force=True)
    with pytest.raises(NotFoundError):
        repo.get_version("p", 1)
    assert repo.get_run("r1").name == run.name
    assert len(repo.list_events("r1")) == 1
    # Re-creating the pipeline starts numbering afresh, with a new etag.
    add_pipeline(repo, "p")
    assert add_version(repo, "p") == 1


# --- crash safety -------------------------------------------------------------------------------
_WRITER = textwrap.dedent(
    """
    import sys
    from control_plane.storage.repository import NewRun, RunChange
    from control_plane.storage.sql import open_repository
    from raypipe.v1 import pipeline_spec_pb2, run_pb2

    repo = open_repository(sys.argv[1])
    spec = pipeline_spec_pb2.PipelineSpec(nodes=[pipeline_spec_pb2.Node(id="a", type="noop")])
    for i in range(1_000_000):
        repo.create_pipeline(f"p{i}", display_name="", description="", labels={})
        repo.create_version(f"p{i}", spec, spec_digest="", description="", make_default=True)
        repo.create_run(NewRun(f"r{i}", f"p{i}", 1, {}, ["a"]))
        repo.record(f"r{i}", RunChange(events=[run_pb2.RunEvent(message=str(i))]))
        print(i, flush=True)  # everything of round i is committed
    """
)


def test_nothing_committed_is_lost_to_kill_9(db_url: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, db_url], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    assert writer.stdout is not None
    last = -1
    for line in writer.stdout:
        last = int(line)
        if last >= 30:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert last >= 30, "the writer died before it committed anything"

    reopened = open_repository(db_url)
    try:
        for i in range(last + 1):
            assert reopened.get_pipeline(f"p{i}").latest_version_number == 1
            assert reopened.get_version(f"p{i}", 1).spec.nodes[0].id == "a"
            assert [e.message for e in reopened.list_events(f"r{i}")] == [str(i)]
        # The store is consistent and writable after the crash.
        add_pipeline(reopened, "after")
        add_version(reopened, "after")
    finally:
        reopened.close()


def test_spec_order_of_many_nodes(repo: SqlRepository) -> None:
    node_ids = [f"n{i}" for i in range(500)][::-1]
    repo.create_version(
        "p",
        pipeline_spec_pb2.PipelineSpec(
            nodes=[pipeline_spec_pb2.Node(id=n, type="noop") for n in node_ids]
        ),
        spec_digest="",
        description="",
        make_default=True,
    )
    run, _ = repo.create_run(new_run("big", version_number=3, node_ids=node_ids))
    assert [n.node_id for n in run.nodes] == node_ids
    assert [n.node_id for n in repo.get_run("big").nodes] == node_ids
