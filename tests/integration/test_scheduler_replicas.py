"""Exactly once under concurrency and crashes: two schedulers on one PostgreSQL database, and
a scheduler process killed with SIGKILL at random points while it fires, then restarted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from control_plane.schedules.policy import timing_of
from control_plane.schedules.scheduler import Scheduler, StartRequest
from control_plane.schedules.timing import FakeClock, SystemClock, fires_between
from control_plane.storage._schedule_tables import schedule_fires
from control_plane.storage._tables import runs
from control_plane.storage.schedules import ATTEMPT_LABEL, NewSchedule, ScheduleRepository
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import schedule_pb2
from tests.schedule_fakes import FakeStarter, add_pipeline

T0 = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def add_schedules(
    repo: SqlRepository, count: int, *, every: timedelta, start: datetime, now: datetime
) -> list[str]:
    """``count`` interval schedules anchored at ``start``: ALLOW_ALL (every fire starts a run)
    and CATCHUP_POLICY_ALL (fires missed while down are started when back)."""
    schedules = ScheduleRepository.of(repo)
    config = schedule_pb2.Schedule(
        overlap_policy=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL,
        catchup_policy=schedule_pb2.CATCHUP_POLICY_ALL,
    )
    config.interval.every.FromTimedelta(every)
    config.start_time.FromDatetime(start)
    ids = [f"s{i:03d}" for i in range(count)]
    with schedules.transaction() as tx:
        for schedule_id in ids:
            first = start + every
            tx.insert(NewSchedule(schedule_id, "p", None, config, first, first, now))
    return ids


def run_counts(repo: SqlRepository) -> Counter[tuple[str, datetime, str]]:
    """How many runs each (schedule, scheduled_time, attempt) has."""
    query = sa.select(runs.c.schedule, runs.c.scheduled_time, runs.c.labels).where(
        runs.c.schedule.is_not(None)
    )
    with repo._pool.connect() as conn:
        rows = conn.execute(query).all()
    return Counter((s, t, labels.get(ATTEMPT_LABEL, "1")) for s, t, labels in rows)


# --- two replicas ---------------------------------------------------------------------------------
@pytest.mark.postgres
def test_two_replicas_fire_every_fire_exactly_once(postgres_url: str) -> None:
    setup = open_repository(postgres_url)
    add_pipeline(setup, "p")
    ids = add_schedules(setup, 25, every=timedelta(minutes=1), start=T0, now=T0)
    clock = FakeClock(T0)
    calls: list[tuple[int, str, datetime]] = []
    lock = threading.Lock()

    def replica(index: int) -> tuple[SqlRepository, Scheduler]:
        repo = open_repository(postgres_url)  # its own connection pool, like another process
        rng = random.Random(index)

        def record(request: StartRequest) -> None:
            with lock:
                calls.append((index, request.schedule_id, request.scheduled_time))
            time.sleep(rng.random() * 0.003)  # widen the windows where races could hide

        starter = FakeStarter(repo, clock, before_create=record)
        scheduler = Scheduler(
            ScheduleRepository.of(repo),
            starter,
            clock,
            batch_size=7,  # several transactions per minute, interleaved between replicas
            lease=timedelta(days=1),  # no takeover by lease: every start call is a decision
        )
        return repo, scheduler

    replicas = [replica(0), replica(1)]
    for _, scheduler in replicas:
        scheduler.start()
    try:
        expected = 0
        # Three minutes on time, then ten minutes of downtime caught up at once.
        for minutes, fires in ((1, 1), (2, 1), (3, 1), (13, 10)):
            clock.wait_for_sleepers(2)
            clock.set(T0 + timedelta(minutes=minutes))
            expected += fires * len(ids)
            _wait(lambda n=expected: sum(run_counts(setup).values()) >= n)  # type: ignore[misc]
        clock.wait_for_sleepers(2)
    finally:
        for repo, scheduler in replicas:
            scheduler.stop()
            repo.close()
    counts = run_counts(setup)
    assert sum(counts.values()) == expected == 325
    assert set(counts.values()) == {1}  # no (schedule, time) twice
    started = Counter((s, t) for _, s, t in calls)
    assert set(started.values()) == {1}  # and no fire even decided twice
    assert len(started) == expected
    by_replica = Counter(index for index, _, _ in calls)
    print(f"fires started per replica: {dict(by_replica)}")
    setup.close()


# --- kill -9 ------------------------------------------------------------------------------------------
def child_main() -> None:
    """A scheduler process on the database at argv[1], until it is killed. Its starter
    sleeps a little before and after storing each run, so that a kill often lands between
    deciding, recording, storing the run and recording the run."""
    url, seed = sys.argv[1], int(sys.argv[2])
    repo = open_repository(url)
    rng = random.Random(seed)

    def pause(_: StartRequest) -> None:
        time.sleep(rng.random() * 0.01)

    starter = FakeStarter(repo, SystemClock(), before_create=pause, after_create=pause)
    scheduler = Scheduler(ScheduleRepository.of(repo), starter, SystemClock())
    scheduler.start()
    print("ready", flush=True)
    threading.Event().wait()


def test_kill9_while_firing_neither_loses_nor_doubles_a_fire(db_url: str, tmp_path: Path) -> None:
    repo = open_repository(db_url)
    add_pipeline(repo, "p")
    now = datetime.now(UTC)
    start = now.replace(microsecond=0)
    every = timedelta(seconds=1)
    ids = add_schedules(repo, 20, every=every, start=start, now=now)
    rng = random.Random(7)
    left_behind: Counter[str] = Counter()
    log = (tmp_path / "child.log").open("w")
    try:
        for round_ in range(6):
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from tests.integration.test_scheduler_replicas import child_main; "
                    "child_main()",
                    db_url,
                    str(round_),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.3, 1.5))  # let it fire, then kill it mid-way
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            left = _left_behind(repo)
            for key in left:
                left_behind[key] += left[key]
    finally:
        log.close()
    # What a restarted replica does first: start every fire a dead process left pending.
    clock = FakeClock(datetime.now(UTC))
    schedules = ScheduleRepository.of(repo)
    Scheduler(schedules, FakeStarter(repo, clock), clock).run_once(repair_all=True)

    counts = run_counts(repo)
    assert set(counts.values()) == {1}  # nothing doubled
    total = 0
    for schedule_id in ids:
        row = schedules.get(schedule_id)
        expected = fires_between(
            timing_of(row.config, schedule_id), start, row.fired_through, limit=100_000
        ).fires
        fires = schedules.fires(schedule_id)
        assert [f.scheduled_time for f in fires] == list(expected)  # nothing lost
        assert {f.state for f in fires} == {"started"}
        runs = {t for (s, t, _) in counts if s == f"schedules/{schedule_id}"}
        assert runs == set(expected)
        total += len(expected)
    assert total > 100
    print(
        f"{total} fires across 6 kills, each with exactly one run; the kills left "
        f"{left_behind['recorded']} fires recorded but not started and "
        f"{left_behind['stored']} with a stored run not yet recorded"
    )
    repo.close()


def _left_behind(repo: SqlRepository) -> Counter[str]:
    """Pending fires a killed process left: without a run, or with a run it did not record."""
    query = (
        sa.select(schedule_fires.c.schedule_id, schedule_fires.c.scheduled_time, runs.c.id)
        .select_from(
            schedule_fires.outerjoin(
                runs,
                sa.and_(
                    runs.c.schedule == sa.literal("schedules/") + schedule_fires.c.schedule_id,
                    runs.c.scheduled_time == schedule_fires.c.scheduled_time,
                ),
            )
        )
        .where(schedule_fires.c.state == "pending")
    )
    with repo._pool.connect() as conn:
        rows = conn.execute(query).all()
    return Counter("stored" if run_id else "recorded" for _, _, run_id in rows)


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)
