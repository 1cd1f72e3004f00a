"""Which replica records which run: the leases in the runs' rows, the fence on every write of
engine events, and PostgreSQL's cross-replica notifications. Two repositories on one database
stand for two control-plane replicas (each has its own connection pool, as a process would)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from control_plane.storage.repository import LeaseLostError, RecorderLease, RunChange
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import run_pb2
from tests.integration.test_storage import add_pipeline, add_version
from tests.integration.test_storage_runs import new_run

Run = run_pb2.Run
NOW = 1_000_000.0


def event(message: str) -> run_pb2.RunEvent:
    return run_pb2.RunEvent(type=run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED, message=message)


@pytest.fixture
def replicas(db_url: str) -> Iterator[tuple[SqlRepository, SqlRepository]]:
    a = open_repository(db_url)
    add_pipeline(a, "p")
    add_version(a, "p")
    b = open_repository(db_url)
    yield a, b
    a.close()
    b.close()


def test_a_fenced_write_of_a_replica_that_lost_the_run_stores_nothing(
    replicas: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = replicas
    a.create_run(new_run("r1", recorder=RecorderLease("A", NOW + 10)))
    a.record(
        "r1",
        RunChange(state=Run.STATE_RUNNING, events=[event("one")], engine_cursor=1),
        lease=RecorderLease("A", NOW + 10),
    )

    # A's lease is live: B may not take the run, and it is nobody's to claim.
    assert not b.claim_run("r1", RecorderLease("B", NOW + 15), now=NOW + 5)
    assert b.unclaimed_run_ids(NOW + 5) == []
    # Once it lapsed, B takes it, and A's late write (it believes it still records) is refused
    # whole: no event, no cursor, no state.
    assert b.unclaimed_run_ids(NOW + 11) == ["r1"]
    assert b.claim_run("r1", RecorderLease("B", NOW + 21), now=NOW + 11)
    with pytest.raises(LeaseLostError):
        a.record(
            "r1",
            RunChange(state=Run.STATE_FAILED, events=[event("late")], engine_cursor=2),
            lease=RecorderLease("A", NOW + 20),
        )
    assert [e.message for e in a.list_events("r1")] == ["one"]
    assert a.engine_cursor("r1") == 1
    assert a.get_run("r1").state == Run.STATE_RUNNING
    # B's fenced writes go through, numbered after A's.
    _, stored = b.record(
        "r1", RunChange(events=[event("two")], engine_cursor=2), lease=RecorderLease("B", NOW + 22)
    )
    assert [e.sequence for e in stored] == [2]
    assert b.renew_claims(RecorderLease("B", NOW + 30)) == {"r1"}
    assert a.renew_claims(RecorderLease("A", NOW + 30)) == set()


def test_a_run_that_ended_is_nobodys_to_claim(
    replicas: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = replicas
    a.create_run(new_run("done", recorder=RecorderLease("A", NOW + 10)))
    a.create_run(new_run("live", recorder=RecorderLease("A", NOW + 10)))
    a.record("done", RunChange(state=Run.STATE_SUCCEEDED), lease=RecorderLease("A", NOW + 10))
    # The lease went with the run's end: a stale list of active runs cannot revive it.
    assert not b.claim_run("done", RecorderLease("B", NOW + 30), now=NOW + 20)
    assert b.unclaimed_run_ids(NOW + 20) == ["live"]
    assert a.renew_claims(RecorderLease("A", NOW + 30)) == {"live"}
    with pytest.raises(LeaseLostError):  # a fenced write of its own ended run, too
        b.record("done", RunChange(events=[event("x")]), lease=RecorderLease("B", NOW + 30))


def test_a_stopping_replica_gives_its_runs_up_at_once(
    replicas: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = replicas
    for run_id in ("r1", "r2"):
        a.create_run(new_run(run_id, recorder=RecorderLease("A", NOW + 10)))
    b.create_run(new_run("r3", recorder=RecorderLease("B", NOW + 10)))
    assert a.release_claims("A") == 2
    assert b.unclaimed_run_ids(NOW) == ["r1", "r2"]
    assert b.claim_run("r1", RecorderLease("B", NOW + 10), now=NOW)
    assert b.renew_claims(RecorderLease("B", NOW + 20)) == {"r1", "r3"}


def test_of_two_replicas_claiming_one_lapsed_run_exactly_one_wins(
    replicas: tuple[SqlRepository, SqlRepository],
) -> None:
    a, b = replicas
    for i in range(20):
        a.create_run(new_run(f"r{i}", recorder=RecorderLease("dead", NOW)))
    with ThreadPoolExecutor(8) as pool:
        wins = list(
            pool.map(
                lambda job: (
                    job[1],
                    job[0].claim_run(f"r{job[2]}", RecorderLease(job[1], NOW + 60), now=NOW + 1),
                ),
                [(repo, name, i) for i in range(20) for repo, name in ((a, "A"), (b, "B"))],
            )
        )
    claimed = [name for name, won in wins if won]
    assert len(claimed) == 20  # one winner per run
    held = a.renew_claims(RecorderLease("A", NOW + 90)) | b.renew_claims(
        RecorderLease("B", NOW + 90)
    )
    assert held == {f"r{i}" for i in range(20)}


def test_sqlite_has_no_cross_replica_channel(tmp_path) -> None:
    repo = open_repository(f"sqlite:///{tmp_path / 'raypipe.db'}", exclusive=True)
    try:
        assert repo.listen_runs(lambda run_id: None) is None
        assert not repo.shared
    finally:
        repo.close()


@pytest.mark.postgres
def test_events_stored_by_one_replica_wake_the_other(postgres_url: str) -> None:
    a = open_repository(postgres_url)
    b = open_repository(postgres_url)
    add_pipeline(a, "p")
    add_version(a, "p")
    woken: dict[str, list[str]] = {"a": [], "b": []}
    arrived = threading.Event()

    def on_b(run_id: str) -> None:
        woken["b"].append(run_id)
        arrived.set()

    listeners = [a.listen_runs(woken["a"].append), b.listen_runs(on_b)]
    try:
        assert a.shared
        assert b.shared
        for listener in listeners:
            assert listener is not None
            assert listener.listening.wait(30)
        a.create_run(new_run("r1"))
        a.record("r1", RunChange(state=Run.STATE_RUNNING, events=[event("one")]))
        assert arrived.wait(30), "replica B heard nothing"
        assert woken["b"] == ["r1"]
        # A change without events (and a write that rolled back) sends nothing; a replica's
        # own writes never wake itself (its watchers were woken in-process).
        a.record("r1", RunChange(labels={"k": "v"}))
        with pytest.raises(LeaseLostError):
            a.record("r1", RunChange(events=[event("x")]), lease=RecorderLease("Z", NOW))
        a.record("r1", RunChange(events=[event("two")]))
        deadline = time.monotonic() + 30
        while len(woken["b"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert woken["b"] == ["r1", "r1"]
        assert woken["a"] == []
    finally:
        for listener in listeners:
            if listener is not None:
                listener.close()
        a.close()
        b.close()
