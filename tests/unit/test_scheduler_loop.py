"""The firing loop against a real SQLite file, a fake clock and a starter without Ray.

Each test moves the FakeClock by hand and runs one pass of the loop (``run_once``), so every
decision is deterministic; one test runs the loop's own thread to show it sleeps until the
next due time and wakes on a change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from control_plane.runs.supervisor import RunSupervisor
from control_plane.schedules.policy import retry_delay, timing_of
from control_plane.schedules.scheduler import Scheduler, StartRequest, SupervisorStarter
from control_plane.schedules.service import ScheduleService
from control_plane.schedules.timing import FakeClock, jittered
from control_plane.storage.schedules import ATTEMPT_LABEL, ScheduleRepository
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import run_pb2, schedule_pb2
from raypipe.v1 import schedule_service_pb2 as pb
from tests.engine_fakes import FakeEngine
from tests.schedule_fakes import Crash, FakeStarter, add_pipeline, add_version, attempt, scheduled

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
Overlap = schedule_pb2.OverlapPolicy
Catchup = schedule_pb2.CatchupPolicy
RunState = run_pb2.Run.State


@dataclass
class Env:
    repo: SqlRepository
    schedules: ScheduleRepository
    clock: FakeClock
    starter: FakeStarter
    scheduler: Scheduler
    service: ScheduleService

    def create(
        self,
        schedule_id: str,
        *,
        every: timedelta = MIN,
        overlap: int = Overlap.OVERLAP_POLICY_ALLOW_ALL,
        pipeline: str = "pipelines/p",
        **fields: object,
    ) -> schedule_pb2.Schedule:
        """An interval schedule anchored at T0 (fires at T0 + k * every)."""
        s = schedule_pb2.Schedule(overlap_policy=overlap, **fields)  # type: ignore[arg-type]
        if "pipeline_version" not in fields:
            s.pipeline = pipeline
        s.interval.every.FromTimedelta(every)
        s.start_time.FromDatetime(T0)
        request = pb.CreateScheduleRequest(schedule=s, schedule_id=schedule_id)
        return self.service.CreateSchedule(request, None).schedule

    def at(self, offset: timedelta) -> datetime:
        """Move the clock to T0 + offset and run one pass; returns the pass's deadline."""
        self.clock.set(T0 + offset)
        return self.scheduler.run_once()

    def runs(self, schedule_id: str) -> list[run_pb2.Run]:
        return self.starter.runs(schedule_id)

    def times(self, schedule_id: str) -> list[timedelta]:
        return [scheduled(r) - T0 for r in self.runs(schedule_id)]

    def states(self, schedule_id: str) -> dict[timedelta, str]:
        return {f.scheduled_time - T0: f.state for f in self.schedules.fires(schedule_id)}

    def restart(self, starter: FakeStarter | None = None) -> Scheduler:
        """A new scheduler process on the same database (the old one is gone)."""
        self.starter = starter or FakeStarter(self.repo, self.clock)
        self.scheduler = _scheduler(self.schedules, self.starter, self.clock)
        self.service = ScheduleService(self.repo, self.schedules, self.scheduler)
        return self.scheduler


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    repo = open_repository(f"sqlite:///{tmp_path / 'raypipe.db'}")
    add_pipeline(repo, "p", "x")
    clock = FakeClock(T0)
    schedules = ScheduleRepository.of(repo)
    starter = FakeStarter(repo, clock)
    scheduler = _scheduler(schedules, starter, clock)
    yield Env(
        repo, schedules, clock, starter, scheduler, ScheduleService(repo, schedules, scheduler)
    )
    repo.close()


# --- firing ------------------------------------------------------------------------------------
def test_fires_each_nominal_time_once_and_sleeps_until_the_next(env: Env) -> None:
    created = env.create("s", parameters={"x": _value("a")})
    assert created.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + MIN
    assert env.at(timedelta(seconds=30)) == T0 + MIN  # nothing due: sleep until the fire
    assert env.runs("s") == []
    assert env.at(MIN) == T0 + 2 * MIN
    assert env.at(MIN + timedelta(seconds=1)) == T0 + 2 * MIN  # a second pass: no double
    (run,) = env.runs("s")
    assert run.schedule == "schedules/s"
    assert scheduled(run) == T0 + MIN
    assert attempt(run) == 1
    assert run.parameters["x"].string_value == "a"
    env.at(3 * MIN)  # a late pass: the latest missed fire (CATCHUP_POLICY_LATEST)
    assert env.times("s") == [MIN, 3 * MIN]
    schedule = env.schedules.get("s").to_proto()
    assert schedule.runs_started == 2
    assert schedule.last_fire_time.ToDatetime(tzinfo=UTC) == T0 + 3 * MIN
    assert schedule.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 4 * MIN


def test_jitter_delays_a_fire_but_the_run_carries_its_nominal_time(env: Env) -> None:
    env.create("s", jitter=_duration(timedelta(seconds=30)))
    row = env.schedules.get("s")
    due = row.next_due_time
    assert due is not None
    assert T0 + MIN <= due < T0 + MIN + timedelta(seconds=30)
    assert due == jittered(timing_of(row.config, row.id), T0 + MIN)
    if due > T0 + MIN:
        assert env.at(MIN) == due  # not due at its nominal time
        assert env.runs("s") == []
    env.at(due - T0)
    assert env.times("s") == [MIN]


def test_a_cron_in_a_time_zone_fires_once_across_spring_forward(env: Env) -> None:
    # Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29: 02:30 does not exist that day
    # and fires once at 03:30 local (01:30 UTC); the day after, 02:30 is 00:30 UTC.
    env.clock.set(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    s = schedule_pb2.Schedule(pipeline="pipelines/p", time_zone="Europe/Berlin")
    s.cron.expression = "30 2 * * *"
    env.service.CreateSchedule(pb.CreateScheduleRequest(schedule=s, schedule_id="berlin"), None)
    for hour in range(13, 24 * 3, 1):  # a pass every hour for three days
        env.clock.set(datetime(2026, 3, 28, tzinfo=UTC) + timedelta(hours=hour, minutes=45))
        env.scheduler.run_once()
        for run in env.starter.active("berlin"):
            env.starter.finish(run)
    assert [scheduled(r) for r in env.runs("berlin")] == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


# --- overlap policies ---------------------------------------------------------------------------
def test_skip_skips_fires_while_the_previous_run_is_going(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_SKIP)
    env.at(MIN)
    env.at(2 * MIN)
    assert env.times("s") == [MIN]
    assert env.states("s") == {MIN: "started", 2 * MIN: "skipped"}
    env.starter.finish(env.runs("s")[0])
    env.at(3 * MIN)
    assert env.times("s") == [MIN, 3 * MIN]
    assert env.schedules.get("s").runs_started == 2


def test_buffer_one_keeps_one_fire_and_starts_it_when_the_run_ends(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_BUFFER_ONE)
    for minute in (1, 2, 3, 4):
        env.at(minute * MIN)
    assert env.times("s") == [MIN]
    assert env.states("s") == {
        MIN: "started",
        2 * MIN: "buffered",
        3 * MIN: "skipped",
        4 * MIN: "skipped",
    }
    env.starter.finish(env.runs("s")[0], RunState.STATE_FAILED)
    env.at(4 * MIN + timedelta(seconds=10))  # the watch notices the end
    assert env.times("s") == [MIN, 2 * MIN]
    env.starter.finish(env.runs("s")[1])
    env.at(4 * MIN + timedelta(seconds=20))
    assert env.times("s") == [MIN, 2 * MIN]  # nothing else was buffered


def test_buffer_all_queues_every_fire_and_runs_them_in_order(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_BUFFER_ALL)
    for minute in (1, 2, 3, 4):
        env.at(minute * MIN)
    assert env.times("s") == [MIN]
    offset = 4 * MIN
    for expected in ([MIN, 2 * MIN], [MIN, 2 * MIN, 3 * MIN], [MIN, 2 * MIN, 3 * MIN, 4 * MIN]):
        env.starter.finish(env.starter.active("s")[0])
        offset += timedelta(seconds=5)
        env.at(offset)
        assert env.times("s") == expected
        assert len(env.starter.active("s")) == 1  # one at a time
    assert set(env.states("s").values()) == {"started"}


def test_cancel_other_cancels_the_running_run_and_starts_the_new_one(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_CANCEL_OTHER)
    env.at(MIN)
    (first,) = env.runs("s")
    env.at(2 * MIN)
    first_after, second = env.runs("s")
    assert first_after.state == RunState.STATE_CANCELLED
    assert env.starter.cancelled == [first.name.removeprefix("runs/")]
    assert second.state == RunState.STATE_PENDING
    assert scheduled(second) == T0 + 2 * MIN


def test_allow_all_starts_runs_alongside(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_ALLOW_ALL)
    for minute in (1, 2, 3):
        env.at(minute * MIN)
    assert len(env.starter.active("s")) == 3


def test_unspecified_overlap_means_skip(env: Env) -> None:
    env.create("s", overlap=Overlap.OVERLAP_POLICY_UNSPECIFIED)
    env.at(MIN)
    env.at(2 * MIN)
    assert env.states("s")[2 * MIN] == "skipped"


# --- catch-up after downtime --------------------------------------------------------------------
def test_catchup_none_skips_missed_fires(env: Env) -> None:
    env.create("s", every=10 * MIN, catchup_policy=Catchup.CATCHUP_POLICY_NONE)
    # The 20-minute fire is 5 minutes late: more than the grace of a slow pass (1 minute).
    assert env.at(25 * MIN) == T0 + 30 * MIN
    assert env.runs("s") == []
    env.at(30 * MIN + timedelta(seconds=59))  # within the grace: on time
    assert env.times("s") == [30 * MIN]


def test_catchup_latest_runs_the_latest_missed_fire(env: Env) -> None:
    env.create("s", catchup_policy=Catchup.CATCHUP_POLICY_LATEST)
    env.at(5 * MIN + timedelta(seconds=30))
    assert env.times("s") == [5 * MIN]


def test_catchup_all_runs_the_missed_fires_within_the_window(env: Env) -> None:
    env.create(
        "s",
        catchup_policy=Catchup.CATCHUP_POLICY_ALL,
        catchup_window=_duration(3 * MIN),
    )
    env.at(5 * MIN + timedelta(seconds=30))
    assert env.times("s") == [3 * MIN, 4 * MIN, 5 * MIN]
    assert env.schedules.get("s").catchup_note == ""


def test_catchup_all_is_capped_and_says_so(env: Env) -> None:
    env.create(
        "s",
        every=timedelta(seconds=10),
        catchup_policy=Catchup.CATCHUP_POLICY_ALL,
        catchup_window=_duration(timedelta(hours=1)),
    )
    env.at(30 * MIN)  # 180 missed fires
    times = env.times("s")
    assert len(times) == 100
    assert times[-1] == 30 * MIN  # the most recent ones
    assert "capped at 100" in env.schedules.get("s").catchup_note


# --- bounds -------------------------------------------------------------------------------------
def test_max_runs_stops_the_schedule(env: Env) -> None:
    env.create("s", max_runs=3)
    for minute in range(1, 6):
        env.at(minute * MIN)
    assert env.times("s") == [MIN, 2 * MIN, 3 * MIN]
    schedule = env.schedules.get("s").to_proto()
    assert schedule.runs_started == 3
    assert not schedule.HasField("next_fire_time")


def test_max_runs_counts_runs_not_fires_skipped_by_overlap(env: Env) -> None:
    env.create("s", max_runs=2, overlap=Overlap.OVERLAP_POLICY_SKIP)
    env.at(MIN)
    env.at(2 * MIN)  # skipped: still running
    env.starter.finish(env.runs("s")[0])
    env.at(3 * MIN)
    env.at(4 * MIN)
    assert env.times("s") == [MIN, 3 * MIN]
    assert not env.schedules.get("s").to_proto().HasField("next_fire_time")


def test_end_time_is_inclusive_and_ends_the_schedule(env: Env) -> None:
    env.create("s", end_time=_stamp(T0 + 3 * MIN))
    for minute in range(1, 6):
        env.at(minute * MIN)
    assert env.times("s") == [MIN, 2 * MIN, 3 * MIN]
    assert env.schedules.get("s").next_due_time is None


# --- retries ------------------------------------------------------------------------------------
def test_a_failed_run_is_retried_with_exponential_backoff_for_the_same_time(env: Env) -> None:
    retry = schedule_pb2.ScheduleRetryPolicy(max_retries=2, backoff_multiplier=3)
    retry.initial_backoff.FromTimedelta(timedelta(seconds=10))
    retry.max_backoff.FromTimedelta(timedelta(seconds=20))
    assert retry_delay(retry, 1) == timedelta(seconds=10)
    assert retry_delay(retry, 2) == timedelta(seconds=20)  # 30 s, capped
    env.create("s", retry=retry, every=timedelta(hours=1))
    sec = timedelta(seconds=1)
    env.at(60 * MIN)
    env.clock.set(T0 + 60 * MIN + 5 * sec)
    env.starter.finish(env.runs("s")[0], RunState.STATE_FAILED)
    assert env.at(60 * MIN + 6 * sec) == T0 + 60 * MIN + 15 * sec  # sleeps until the retry
    assert len(env.runs("s")) == 1
    env.at(60 * MIN + 15 * sec)
    assert [attempt(r) for r in env.runs("s")] == [1, 2]
    env.clock.set(T0 + 60 * MIN + 20 * sec)
    env.starter.finish(env.runs("s")[1], RunState.STATE_FAILED)
    env.at(60 * MIN + 21 * sec)
    env.at(60 * MIN + 39 * sec)
    assert len(env.runs("s")) == 2  # the second delay is 20 s, from 20 s
    env.at(60 * MIN + 40 * sec)
    runs = env.runs("s")
    assert [attempt(r) for r in runs] == [1, 2, 3]
    assert {scheduled(r) for r in runs} == {T0 + 60 * MIN}  # one fire, three runs
    env.starter.finish(runs[2], RunState.STATE_FAILED)
    env.at(60 * MIN + 50 * sec)
    env.at(100 * MIN - sec)
    assert len(env.runs("s")) == 3  # no retries left
    assert env.states("s") == {60 * MIN: "started"}


def test_a_retried_run_that_succeeds_ends_the_retries(env: Env) -> None:
    env.create("s", retry=schedule_pb2.ScheduleRetryPolicy(max_retries=5), every=timedelta(hours=1))
    env.at(60 * MIN)
    env.starter.finish(env.runs("s")[0], RunState.STATE_FAILED)
    env.at(60 * MIN + timedelta(seconds=1))
    env.at(62 * MIN)  # default initial backoff: one minute
    second = env.runs("s")[1]
    env.starter.finish(second)
    env.at(63 * MIN)
    env.at(100 * MIN)
    assert [attempt(r) for r in env.runs("s")] == [1, 2]


# --- versions, pause, resume ------------------------------------------------------------------
def test_follows_the_default_version_at_each_fire_while_a_pinned_one_stays(env: Env) -> None:
    env.create("follow")
    env.create("pinned", pipeline_version="pipelines/p/versions/1")
    env.at(MIN)
    add_version(env.repo, "p", "x")  # becomes the default
    env.at(2 * MIN)
    assert [r.pipeline_version for r in env.runs("follow")] == [
        "pipelines/p/versions/1",
        "pipelines/p/versions/2",
    ]
    assert [r.pipeline_version for r in env.runs("pinned")] == ["pipelines/p/versions/1"] * 2


def test_fires_missed_while_paused_are_not_run_on_resume(env: Env) -> None:
    env.create("s")
    env.at(MIN)
    env.clock.set(T0 + MIN + timedelta(seconds=30))
    paused = env.service.PauseSchedule(pb.PauseScheduleRequest(name="schedules/s", note="db migration"), None).schedule  # fmt: skip
    assert paused.paused
    assert paused.pause_note == "db migration"
    assert not paused.HasField("next_fire_time")
    env.at(2 * MIN)
    env.at(3 * MIN)
    assert env.times("s") == [MIN]
    env.clock.set(T0 + 3 * MIN + timedelta(seconds=30))
    resumed = env.service.ResumeSchedule(pb.ResumeScheduleRequest(name="schedules/s", note="done"), None).schedule  # fmt: skip
    assert not resumed.paused
    assert resumed.pause_note == "done"
    assert resumed.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 4 * MIN
    env.at(4 * MIN)
    assert env.times("s") == [MIN, 4 * MIN]


def test_an_update_does_not_lose_a_fire_that_is_due(env: Env) -> None:
    env.create("s")
    env.clock.set(T0 + MIN + timedelta(seconds=1))  # due, and the loop has not run
    change = schedule_pb2.Schedule(name="schedules/s")
    change.interval.every.FromTimedelta(10 * MIN)
    updated = env.service.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=change, update_mask=field_mask_pb2.FieldMask(paths=["interval"])
        ),
        None,
    ).schedule
    assert env.times("s") == [MIN]
    assert updated.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 10 * MIN


# --- crashes ------------------------------------------------------------------------------------
def test_a_crash_between_recording_and_starting_is_repaired_on_restart(env: Env) -> None:
    env.create("s")
    env.starter.before_create = _crash
    with pytest.raises(Crash):
        env.at(MIN)
    assert env.runs("s") == []
    assert env.states("s") == {MIN: "pending"}  # recorded, with the cursor past it
    scheduler = env.restart()
    scheduler.run_once(repair_all=True)
    assert env.times("s") == [MIN]
    assert env.states("s") == {MIN: "started"}


def test_a_crash_after_the_run_was_stored_does_not_double_it(env: Env) -> None:
    env.create("s")
    env.starter.after_create = _crash
    with pytest.raises(Crash):
        env.at(MIN)
    assert env.times("s") == [MIN]
    assert env.states("s") == {MIN: "pending"}
    scheduler = env.restart()
    scheduler.run_once(repair_all=True)
    (run,) = env.runs("s")
    assert env.starter.created == []  # the run's request id found the stored one
    assert env.schedules.fires("s")[0].run_id == run.name.removeprefix("runs/")


def test_another_replica_takes_over_a_pending_fire_only_after_its_lease(env: Env) -> None:
    env.create("s", every=timedelta(hours=1))
    env.starter.before_create = _crash
    with pytest.raises(Crash):
        env.at(60 * MIN)
    other = env.restart()
    env.clock.set(T0 + 60 * MIN + timedelta(seconds=30))
    other.run_once()
    assert env.runs("s") == []  # the lease still holds: its owner may be alive
    env.clock.set(T0 + 61 * MIN + timedelta(seconds=1))
    other.run_once()
    assert env.times("s") == [60 * MIN]


# --- retention of fire records ------------------------------------------------------------------
def test_finished_fire_records_are_pruned_and_their_runs_still_count(env: Env) -> None:
    env.scheduler.fire_retention = timedelta(hours=1)
    env.scheduler.prune_interval = timedelta(minutes=30)
    env.create("s")
    env.create("skip", overlap=Overlap.OVERLAP_POLICY_SKIP)
    for k in range(1, 6):
        env.at(k * MIN)
    for run in env.runs("s")[:4]:
        env.starter.finish(run)  # the run of minute 5 and skip's first run go on
    assert env.states("skip") == {MIN: "started"} | {k * MIN: "skipped" for k in range(2, 6)}
    env.at(2 * timedelta(hours=1))  # prunes: the last prune was at the first pass
    # Kept: fires whose run is not over, and fires younger than the retention.
    assert env.states("s") == {5 * MIN: "started", 120 * MIN: "started"}
    assert env.states("skip") == {MIN: "started", 120 * MIN: "skipped"}
    assert env.times("s") == [k * MIN for k in (1, 2, 3, 4, 5, 120)]  # runs stay
    # A backfill over the pruned range finds the runs: nothing runs twice.
    response = env.service.BackfillSchedule(
        pb.BackfillScheduleRequest(
            name="schedules/s", start_time=_stamp(T0), end_time=_stamp(T0 + 5 * MIN)
        ),
        None,
    )
    assert [t.ToDatetime(tzinfo=UTC) - T0 for t in response.existing] == [
        k * MIN for k in range(1, 6)
    ]
    assert list(response.runs) == []
    assert len(env.runs("s")) == 6
    # Not before prune_interval has passed again.
    env.starter.finish(env.runs("s")[4])
    env.at(130 * MIN)
    assert 5 * MIN in env.states("s")
    assert env.scheduler.prune(T0 + 130 * MIN) == 1


# --- the adapter over the RunSupervisor ---------------------------------------------------------
def _real_supervisor(repo: SqlRepository) -> tuple[RunSupervisor, FakeEngine]:
    """The real RunSupervisor over the real database, on a fake engine (no Ray)."""
    engine = FakeEngine()
    supervisor = RunSupervisor(repo, engine, artifact_root="/nonexistent", data_roots=())
    return supervisor, engine


def test_supervisor_starter_launches_runs_that_carry_the_fire(env: Env) -> None:
    supervisor, engine = _real_supervisor(env.repo)
    starter = SupervisorStarter(env.repo, supervisor)
    request = StartRequest(
        schedule_id="s",
        scheduled_time=T0,
        attempt=2,
        pipeline_id="p",
        version_number=1,
        parameters={"x": "v"},
        request_id="schedule:s:1:2",
    )
    run = starter.start(request)
    assert (run.schedule, scheduled(run)) == ("schedules/s", T0)
    assert run.labels[ATTEMPT_LABEL] == "2"
    assert run.display_name == "s-20260302-120000-attempt2"
    assert engine.submits == [run.name.removeprefix("runs/")]  # handed to the engine
    assert starter.start(request).name == run.name  # the request id: no second run
    assert len(engine.submits) == 1
    starter.cancel(run.name.removeprefix("runs/"))
    assert engine.cancelled == [run.name.removeprefix("runs/")]
    assert env.repo.get_run(run.name.removeprefix("runs/")).state == RunState.STATE_CANCELLING


def test_supervisor_starter_fails_a_run_whose_version_lacks_a_parameter(env: Env) -> None:
    add_version(env.repo, "p")  # version 2 declares no "x"
    supervisor, engine = _real_supervisor(env.repo)
    run = SupervisorStarter(env.repo, supervisor).start(
        StartRequest("s", T0, 1, "p", 2, parameters={"x": "v"}, request_id="r")
    )
    assert engine.submits == []  # never handed to the engine, but stored through the supervisor
    assert run.state == RunState.STATE_FAILED
    assert run.schedule == "schedules/s"
    assert "pipelines/p/versions/2 declares no parameter 'x'" in run.error.message
    assert run.error.type == "raypipe.InvalidParameters"


# --- the thread ---------------------------------------------------------------------------------
def test_the_loop_sleeps_until_the_next_due_time_and_wakes_on_a_change(env: Env) -> None:
    passes = _count_passes(env.scheduler)
    env.create("hourly", every=timedelta(hours=1))
    env.scheduler.start()
    try:
        assert env.clock.wait_for_sleepers(1) == [T0 + 60 * MIN]
        before = passes[0]
        time.sleep(0.3)
        assert passes[0] == before  # asleep: no polling
        env.create("often", every=timedelta(seconds=10))  # wakes the loop
        _wait(lambda: env.clock.sleepers == [T0 + timedelta(seconds=10)])
        env.clock.set(T0 + timedelta(seconds=10))
        _wait(lambda: len(env.runs("often")) == 1)
        _wait(lambda: env.clock.sleepers == [T0 + timedelta(seconds=20)])
    finally:
        env.scheduler.stop()
    assert env.runs("hourly") == []


# --- helpers ------------------------------------------------------------------------------------
def _scheduler(schedules: ScheduleRepository, starter: FakeStarter, clock: FakeClock) -> Scheduler:
    # Runs are watched each (fake) second; no resync cap on sleeping, so deadlines are exact.
    return Scheduler(
        schedules,
        starter,
        clock,
        watch_interval=timedelta(seconds=1),
        resync_interval=timedelta(days=1),
    )


def _crash(_: object) -> None:
    raise Crash


def _count_passes(scheduler: Scheduler) -> list[int]:
    count = [0]
    run_once = scheduler.run_once

    def counting(*, repair_all: bool = False) -> datetime:
        count[0] += 1
        return run_once(repair_all=repair_all)

    scheduler.run_once = counting  # type: ignore[method-assign]
    return count


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        threading.Event().wait(0.01)


def _value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def _duration(delta: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(delta)
    return d


def _stamp(when: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(when)
    return t
