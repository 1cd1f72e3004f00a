"""Two RunSupervisors on one PostgreSQL database and one engine (the fake of
tests/engine_fakes.py, which, like Ray's supervisor actor, keeps every event until it is
acknowledged and answers any number of pollers): each run is recorded by one of them at a time,
a replica that stops hands its runs over at once, one that dies loses them when its leases
lapse, and the history the survivor completes has every event once, in order. (The same with
real processes, kill -9 and Ray: tests/integration/test_replicas.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from control_plane.runs.supervisor import RunSupervisor, dead_here, rebuild_submission
from control_plane.storage._tables import runs
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import run_pb2
from tests.engine_fakes import FakeEngine
from tests.schedule_fakes import add_pipeline
from tests.unit.test_run_supervisor import Env, RecordingTracker

pytestmark = pytest.mark.postgres
RunState = run_pb2.Run.State
LEASE_S = 0.4


@dataclass
class Replica:
    repo: SqlRepository
    supervisor: RunSupervisor

    def env(self, engine: FakeEngine) -> Env:
        return Env(self.repo, engine, RecordingTracker(), self.supervisor)


def replica(url: str, engine: FakeEngine, name: str) -> Replica:
    repo = open_repository(url)
    supervisor = RunSupervisor(
        repo,
        engine,
        artifact_root="/nonexistent/artifacts",
        data_roots=("/nonexistent/data",),
        poll_timeout=0.1,
        tracker=RecordingTracker(),
        lease_seconds=LEASE_S,
        replica=name,
    )
    supervisor.start(
        lambda run_id: rebuild_submission(
            repo, run_id, artifact_root="/nonexistent/artifacts", data_roots=("/nonexistent",)
        )
    )
    return Replica(repo, supervisor)


@pytest.fixture
def cluster(postgres_url: str) -> Iterator[tuple[FakeEngine, Replica, Replica]]:
    setup = open_repository(postgres_url)
    add_pipeline(setup, "p")
    setup.close()
    engine = FakeEngine()
    a, b = replica(postgres_url, engine, "A"), replica(postgres_url, engine, "B")
    yield engine, a, b
    for r in (a, b):
        r.supervisor.stop()
        r.repo.close()


def recorder(repo: SqlRepository, run_id: str) -> str | None:
    with repo._pool.connect() as conn:
        return conn.execute(
            runs.select().with_only_columns(runs.c.recorder).where(runs.c.id == run_id)
        ).scalar()


def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def emit_nodes(engine: FakeEngine, run_id: str, nodes: range) -> None:
    for i in nodes:
        engine.emit(run_id, "node", "a", "RUNNING", attempt=i)
        engine.emit(run_id, "node", "a", "FAILED" if i < 9 else "SUCCEEDED", attempt=i)


def assert_history_complete(repo: SqlRepository, run_id: str) -> None:
    """Every engine event once, in order: nine attempts of the node, each RUNNING then ended."""
    events = repo.list_events(run_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    node_states = [
        e.node_state for e in events if e.type == run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED
    ]
    expected = []
    for i in range(1, 10):
        end = "STATE_FAILED" if i < 9 else "STATE_SUCCEEDED"
        expected += [run_pb2.NodeExecution.STATE_RUNNING, run_pb2.NodeExecution.State.Value(end)]
    assert node_states == expected
    states = Counter(
        e.run_state for e in events if e.type == run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED
    )
    assert states[RunState.STATE_SUCCEEDED] == 1


def test_only_the_replica_holding_a_run_records_it(
    cluster: tuple[FakeEngine, Replica, Replica],
) -> None:
    engine, a, b = cluster
    run = a.env(engine).launch()
    run_id = run.name.removeprefix("runs/")
    assert recorder(a.repo, run_id) == "A"
    engine.emit(run_id, "run", state="RUNNING")
    emit_nodes(engine, run_id, range(1, 10))
    engine.emit(run_id, "run", state="SUCCEEDED")
    done = a.env(engine).wait_for(run, RunState.STATE_SUCCEEDED)
    assert done.nodes[0].attempt == 9
    time.sleep(LEASE_S)  # B's lease loop ran meanwhile and found nothing to take
    assert_history_complete(b.repo, run_id)
    assert recorder(a.repo, run_id) is None  # an ended run is nobody's


def started(engine: FakeEngine, a: Replica) -> tuple[run_pb2.Run, str]:
    """A run launched on replica ``a``, RUNNING; and its id."""
    run = a.env(engine).launch()
    run_id = run.name.removeprefix("runs/")
    engine.emit(run_id, "run", state="RUNNING")
    return run, run_id


def test_a_stopping_replica_hands_its_runs_over_and_a_dead_one_loses_them(
    cluster: tuple[FakeEngine, Replica, Replica], postgres_url: str
) -> None:
    engine, a, b = cluster
    run, run_id = started(engine, a)
    emit_nodes(engine, run_id, range(1, 4))
    wait_until(lambda: a.repo.engine_cursor(run_id) == 7)

    # A stops: its lease is given up and B takes the run at its next look.
    a.supervisor.stop()
    wait_until(lambda: recorder(b.repo, run_id) == "B")
    emit_nodes(engine, run_id, range(4, 7))
    wait_until(lambda: b.repo.engine_cursor(run_id) == 13)

    # A third replica joins; then B dies (its threads stop, nothing is given up): C takes the
    # run once B's lease lapses, and resumes after the stored cursor.
    c = replica(postgres_url, engine, "C")
    try:
        b.supervisor._stop.set()  # a crash: no stop(), no release
        b.supervisor._followed.set()
        died = time.monotonic()
        emit_nodes(engine, run_id, range(7, 10))
        last = engine.emit(run_id, "run", state="SUCCEEDED")
        wait_until(lambda: recorder(c.repo, run_id) == "C" or c.repo.engine_cursor(run_id) > 13)
        taken_over = time.monotonic() - died
        done = c.env(engine).wait_for(run, RunState.STATE_SUCCEEDED, timeout=30)
        assert done.nodes[0].attempt == 9
        assert_history_complete(c.repo, run_id)
        # Within the stated time: the lease, and a quarter of it for the next look (with
        # generous room for a loaded machine).
        assert taken_over < LEASE_S * 1.25 + 5
        wait_until(lambda: engine.acked.get(run_id) == last)  # acknowledged once stored
    finally:
        c.supervisor.stop()
        c.repo.close()


def test_a_restarted_replica_takes_its_dead_predecessors_runs_at_once(
    cluster: tuple[FakeEngine, Replica, Replica], postgres_url: str
) -> None:
    engine, a, _ = cluster
    run, run_id = started(engine, a)
    wait_until(lambda: a.repo.engine_cursor(run_id) == 1)
    # The run's recorder is a process of this host that died (kill -9), with a lease that
    # has a minute left: a new replica on this host need not wait for it.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    predecessor = f"{socket.gethostname()}/{gone.pid}/0dead0"
    a.supervisor._stop.set()  # A stops recording (a crash: nothing given up)
    a.supervisor._followed.set()
    with a.repo._pool.begin() as conn:
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(recorder=predecessor, recorder_until=time.time() + 60)
        )
    c = replica(postgres_url, engine, f"{socket.gethostname()}/{os.getpid()}/restart")
    try:
        assert recorder(c.repo, run_id) == c.supervisor.replica  # taken at its start
        emit_nodes(engine, run_id, range(1, 10))
        engine.emit(run_id, "run", state="SUCCEEDED")
        c.env(engine).wait_for(run, RunState.STATE_SUCCEEDED, timeout=30)
        assert_history_complete(c.repo, run_id)
    finally:
        c.supervisor.stop()
        c.repo.close()


def test_only_a_gone_process_of_this_host_counts_as_dead() -> None:
    host = socket.gethostname()
    me = f"{host}/{os.getpid()}/mine"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert dead_here(f"{host}/{gone.pid}/x", me)
    assert dead_here(f"{host}/{os.getpid()}/earlier", me)  # a restarted container's pid
    assert not dead_here(me, me)
    assert not dead_here(f"{host}/1/init", me)  # alive (pid 1), even if not ours to signal
    assert not dead_here(f"elsewhere/{gone.pid}/x", me)  # another host: only its lease says
    assert not dead_here("garbage", me)
