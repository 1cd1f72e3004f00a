"""Scheduler: 10,000 active schedules due every minute, on the embedded SQLite store.

The firing loop runs in real time (SystemClock) in this process, with a starter that stores
each run in the database as the RunSupervisor does before it hands a run to Ray (Ray itself
is measured by bench_engine). Reported:

1. Spread: 10,000 schedules due every minute with a jitter of 40 s, over two minutes
   (20,000 fires). Lateness of each fire = when its run was stored - its due time (nominal
   time plus its jitter offset): p50, p99, max (target p99 <= 1 s).
2. Idle: the process's CPU time while the loop waits between the two minutes' fires, as a
   share of one core, and how many passes the loop made meanwhile (no polling: about none).
3. Burst: 10,000 fires due at the same instant (no jitter): lateness p50/p99 and the fire
   rate, against the baseline measured here: storing runs in a bare loop, without a
   scheduler (the rate at which the storage alone can take runs).
4. Cron next-fire computation (croniter decides the matching days, raypipe caches them):
   the next fire of COUNT cron schedules over a mix of expressions and zones, cold (each
   distinct expression parsed and validated through croniter, its months' days computed)
   and warm (all cached), and a walk of 200 fires each for 500 of them across month ends.

The schedules are interval triggers of one minute anchored a few seconds ahead, so that the
first minute starts at once instead of at the next full minute; a `* * * * *` cron costs the
same per fire (tens of microseconds to compute; see tests/unit/test_firetimes.py).
Environment: RAYPIPE_BENCH_SCHEDULES (default 10000), RAYPIPE_BENCH_JITTER_S (default 40).
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from control_plane.schedules.policy import timing_of
from control_plane.schedules.scheduler import Scheduler, StartRequest
from control_plane.schedules.timing import (
    SystemClock,
    cron_instants,
    jitter_offset,
    jittered,
    parse_cron,
)
from control_plane.storage.repository import NewRun
from control_plane.storage.schedules import NewSchedule, ScheduleRepository
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import run_pb2, schedule_pb2
from tests.bench._config import sized
from tests.schedule_fakes import add_pipeline

COUNT = int(os.environ.get("RAYPIPE_BENCH_SCHEDULES", sized("10000", "500")))
JITTER = timedelta(seconds=float(os.environ.get("RAYPIPE_BENCH_JITTER_S", sized("40", "4"))))
#: The schedules' interval: a minute, or 10 s in the quick mode (both rounds still measured).
EVERY = sized(timedelta(minutes=1), timedelta(seconds=10))
LEAD = sized(
    timedelta(seconds=5), timedelta(seconds=2)
)  # the first fire comes this long after the set-up


@dataclass
class TimingStarter:
    """Stores runs like the RunSupervisor and notes how late each one was stored."""

    repo: SqlRepository
    jitter: timedelta
    lateness: list[float] = field(default_factory=list)
    stored: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, request: StartRequest) -> run_pb2.Run:
        run, _ = self.repo.create_run(_new_run(request))
        now = datetime.now(UTC)
        nominal = request.scheduled_time
        due = nominal + jitter_offset(request.schedule_id, nominal, self.jitter, nominal + EVERY)
        with self.lock:
            self.lateness.append((now - due).total_seconds())
            self.stored.append(time.monotonic())
        return run

    def cancel(self, run_id: str) -> None:
        raise AssertionError("ALLOW_ALL never cancels")


def _new_run(request: StartRequest) -> NewRun:
    return NewRun(
        run_id=uuid.uuid4().hex,
        pipeline_id=request.pipeline_id,
        version_number=request.version_number,
        parameters=request.parameters,
        node_ids=["a"],
        display_name=request.display_name,
        labels=request.labels,
        request_id=request.request_id,
        schedule=request.schedule,
        scheduled_time=request.scheduled_time,
    )


def _add_schedules(repo: SqlRepository, jitter: timedelta) -> datetime:
    """COUNT interval schedules whose first fire is at the returned instant (plus jitter)."""
    config = schedule_pb2.Schedule(overlap_policy=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL)
    config.interval.every.FromTimedelta(EVERY)
    if jitter:
        config.jitter.FromTimedelta(jitter)
    now = datetime.now(UTC)
    first = (now + LEAD + timedelta(seconds=COUNT / 5000)).replace(microsecond=0)
    config.start_time.FromDatetime(first)
    schedules = ScheduleRepository.of(repo)
    with schedules.transaction() as tx:
        for i in range(COUNT):
            schedule_id = f"bench-{i:05d}"
            due = jittered(timing_of(config, schedule_id), first)
            tx.insert(NewSchedule(schedule_id, "p", None, config, first, due, now))
    return first


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def _wait_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def _storage_baseline(repo: SqlRepository, count: int = 2000) -> float:
    """Runs per second the storage takes in a bare loop (the ceiling of any scheduler)."""
    when = datetime.now(UTC)
    started = time.perf_counter()
    for i in range(count):
        request = StartRequest(
            schedule_id="baseline",
            scheduled_time=when + timedelta(seconds=i),
            attempt=1,
            pipeline_id="p",
            version_number=1,
            request_id=f"baseline-{i}",
        )
        repo.create_run(_new_run(request))
    return count / (time.perf_counter() - started)


class _Passes:
    """Counts the loop's passes (to show it does not poll while idle)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.count = 0
        inner = scheduler.run_once

        def counting(*, repair_all: bool = False) -> datetime:
            self.count += 1
            return inner(repair_all=repair_all)

        scheduler.run_once = counting  # type: ignore[method-assign]


def _spread(directory: Path) -> None:
    repo = open_repository(f"sqlite:///{directory / 'spread.db'}")
    add_pipeline(repo, "p")
    started = time.perf_counter()
    first = _add_schedules(repo, JITTER)
    print(f"set-up: {COUNT:,} schedules stored in {time.perf_counter() - started:.1f} s")
    starter = TimingStarter(repo, JITTER)
    scheduler = Scheduler(ScheduleRepository.of(repo), starter, SystemClock())
    passes = _Passes(scheduler)
    scheduler.start()
    try:
        # Minute 1: every fire is due in [first, first + jitter).
        _wait_until(first + JITTER + timedelta(seconds=2))
        idle_from, idle_to = datetime.now(UTC), first + EVERY - timedelta(seconds=1)
        cpu0, passes0, wall0 = time.process_time(), passes.count, time.monotonic()
        _wait_until(idle_to)
        idle_cpu = time.process_time() - cpu0
        idle_wall = time.monotonic() - wall0
        idle_passes = passes.count - passes0
        _wait_until(first + EVERY + JITTER + timedelta(seconds=2))
        deadline = time.monotonic() + 60
        while len(starter.lateness) < 2 * COUNT and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.stop()
    fires = len(starter.lateness)
    p50, p99, worst = _percentiles(starter.lateness)
    print(
        f"spread (jitter {JITTER.total_seconds():g} s): {fires:,} fires of {2 * COUNT:,} in "
        f"two rounds of {EVERY.total_seconds():g} s; lateness p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {worst * 1000:.1f} ms (target p99 <= 1000 ms)"
    )
    print(
        f"idle between the rounds ({idle_from:%H:%M:%S} to {idle_to:%H:%M:%S}, "
        f"{idle_wall:.1f} s): process CPU {idle_cpu * 1000:.1f} ms = "
        f"{100 * idle_cpu / idle_wall:.3f}% of one core, {idle_passes} loop passes"
    )
    repo.close()


def _burst(directory: Path) -> None:
    repo = open_repository(f"sqlite:///{directory / 'burst.db'}")
    add_pipeline(repo, "p")
    baseline = _storage_baseline(repo)
    first = _add_schedules(repo, timedelta(0))
    starter = TimingStarter(repo, timedelta(0))
    scheduler = Scheduler(ScheduleRepository.of(repo), starter, SystemClock())
    scheduler.start()
    try:
        _wait_until(first)
        deadline = time.monotonic() + 300
        while len(starter.lateness) < COUNT and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
    fires = len(starter.lateness)
    p50, p99, worst = _percentiles(starter.lateness)
    rate = fires / max(worst, 1e-9)
    print(
        f"burst (no jitter): {fires:,} fires due at one instant, all stored after "
        f"{worst:.1f} s; lateness p50 {p50:.2f} s, p99 {p99:.2f} s; {rate:.0f} fires/s = "
        f"{rate / baseline:.2f} x the storage alone ({baseline:.0f} runs/s in a bare loop)"
    )
    repo.close()


def _cron_expressions(count: int) -> list[str]:
    rng = random.Random(6)
    minutes = ["*", "*/5", "0", "30", "15,45", "0-10/5", "*/7"]
    hours = ["*", "0", "9-17", "*/2", "2", "0,12"]
    months = ["*", "1-6", "JAN,JUL"]
    days = [("*", "*"), ("L", "*"), ("*", "MON-FRI"), ("1,15", "SAT"), ("*", "1#2"), ("*", "5L")]
    result = []
    for _ in range(count):
        dom, dow = rng.choice(days)
        minute, hour, month = rng.choice(minutes), rng.choice(hours), rng.choice(months)
        result.append(f"{minute} {hour} {dom} {month} {dow}")
    return result


def _cron_next_fires() -> None:
    names = ("UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe")
    zones = [ZoneInfo(name) for name in names]
    expressions = _cron_expressions(COUNT)
    after = datetime(2025, 3, 8, 12, tzinfo=UTC)  # New York springs forward the next day
    timings = []
    for _ in ("cold", "warm"):
        started = time.perf_counter()
        for i, expression in enumerate(expressions):
            next(cron_instants(parse_cron(expression), zones[i % len(zones)], after))
        timings.append((time.perf_counter() - started) / COUNT * 1e6)
    started, walked = time.perf_counter(), 0
    for i, expression in enumerate(expressions[:500]):
        instants = cron_instants(parse_cron(expression), zones[i % len(zones)], after)
        walked += sum(1 for _ in itertools.islice(instants, 200))
    walk = (time.perf_counter() - started) / walked * 1e6
    print(
        f"cron next fire ({COUNT:,} schedules, {len(set(expressions))} distinct expressions, "
        f"4 zones): cold {timings[0]:.0f} us, warm {timings[1]:.0f} us per schedule; "
        f"walking {walked:,} fires: {walk:.1f} us per fire"
    )


def main() -> None:
    _cron_next_fires()
    with tempfile.TemporaryDirectory(prefix="raypipe-bench-scheduler-") as directory:
        _spread(Path(directory))
        _burst(Path(directory))


if __name__ == "__main__":
    main()
