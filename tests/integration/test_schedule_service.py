"""ScheduleService over gRPC: a real in-process server on port 0, real SQLite and PostgreSQL.

Most tests start runs through the fake starter and move a FakeClock by hand (the firing loop
runs one pass at a time), so every policy is checked deterministically; the last test runs
the real server with the RunSupervisor on the session's Ray cluster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from control_plane.errors import FailedPreconditionError
from control_plane.pipelines.service import PipelineService
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService
from control_plane.schedules.timing import FakeClock
from control_plane.server import ControlPlane
from control_plane.storage.schedules import ScheduleRepository
from control_plane.storage.sql import SqlRepository, open_repository
from ray_nodes.registry import default_registry
from raypipe.v1 import pipeline_service_pb2 as ppb
from raypipe.v1 import pipeline_service_pb2_grpc, run_pb2, schedule_pb2, schedule_service_pb2_grpc
from raypipe.v1 import run_service_pb2 as rpb
from raypipe.v1 import schedule_service_pb2 as pb
from tests.integration.conftest import Api, expect_error
from tests.schedule_fakes import FakeStarter, add_pipeline, add_version, scheduled

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
INVALID = grpc.StatusCode.INVALID_ARGUMENT
Overlap = schedule_pb2.OverlapPolicy
RunState = run_pb2.Run.State


@dataclass
class Plane:
    repo: SqlRepository
    clock: FakeClock
    starter: FakeStarter
    scheduler: Scheduler
    stub: schedule_service_pb2_grpc.ScheduleServiceStub
    pipelines: pipeline_service_pb2_grpc.PipelineServiceStub

    def create(self, schedule_id: str = "s", **fields: Any) -> schedule_pb2.Schedule:
        return self.stub.CreateSchedule(
            pb.CreateScheduleRequest(schedule=schedule(**fields), schedule_id=schedule_id)
        ).schedule

    def get(self, schedule_id: str = "s") -> schedule_pb2.Schedule:
        return self.stub.GetSchedule(
            pb.GetScheduleRequest(name=f"schedules/{schedule_id}")
        ).schedule

    def at(self, offset: timedelta) -> None:
        self.clock.set(T0 + offset)
        self.scheduler.run_once()


@pytest.fixture
def plane(db_url: str) -> Iterator[Plane]:
    repo = open_repository(db_url)
    add_pipeline(repo, "p", "x")
    clock = FakeClock(T0)
    starter = FakeStarter(repo, clock)
    schedules = ScheduleRepository.of(repo)
    scheduler = Scheduler(schedules, starter, clock, watch_interval=timedelta(seconds=1))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleService(repo, schedules, scheduler), server
    )
    pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(
        PipelineService(repo, default_registry()), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Plane(
        repo,
        clock,
        starter,
        scheduler,
        schedule_service_pb2_grpc.ScheduleServiceStub(channel),
        pipeline_service_pb2_grpc.PipelineServiceStub(channel),
    )
    channel.close()
    server.stop(0).wait()
    repo.close()


def schedule(
    *,
    pipeline: str = "pipelines/p",
    every: timedelta | None = MIN,
    cron: str = "",
    start: datetime | None = T0,
    **fields: object,
) -> schedule_pb2.Schedule:
    """An interval schedule anchored at T0 by default (fires at T0 + k * every)."""
    s = schedule_pb2.Schedule(**fields)  # type: ignore[arg-type]
    if "pipeline_version" not in fields:
        s.pipeline = pipeline
    if cron:
        s.cron.expression = cron
    elif every is not None:
        s.interval.every.FromTimedelta(every)
    if start is not None:
        s.start_time.FromDatetime(start)
    return s


def stamp(when: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(when)
    return t


def times(stamps: object) -> list[timedelta]:
    return [s.ToDatetime(tzinfo=UTC) - T0 for s in stamps]  # type: ignore[attr-defined]


# --- create, get, list, delete -------------------------------------------------------------------
def test_create_get_list_and_delete(plane: Plane) -> None:
    created = plane.create("nightly", cron="0 3 * * *", time_zone="Europe/Berlin", display_name="N")
    assert created.name == "schedules/nightly"
    assert created.pipeline == "pipelines/p"
    assert created.pipeline_version == ""
    assert created.cron.expression == "0 3 * * *"
    # 03:00 in Berlin (CEST, UTC+2) on the day after T0 (08:00 UTC).
    assert created.next_fire_time.ToDatetime(tzinfo=UTC) == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
    assert created.etag
    assert created.create_time.ToDatetime(tzinfo=UTC) == T0
    assert plane.get("nightly") == created

    pinned = plane.create("pinned", pipeline_version="pipelines/p/versions/1")
    assert pinned.pipeline == "pipelines/p"
    assert pinned.pipeline_version == "pipelines/p/versions/1"
    add_pipeline(plane.repo, "other")
    plane.clock.set(T0 + timedelta(seconds=1))
    plane.create("elsewhere", pipeline="pipelines/other")
    chosen = plane.stub.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule())).schedule
    assert chosen.name.startswith("schedules/p-")

    names: list[str] = []
    token = ""
    while True:
        page = plane.stub.ListSchedules(pb.ListSchedulesRequest(page_size=1, page_token=token))
        names.extend(s.name for s in page.schedules)
        token = page.next_page_token
        if not token:
            break
    assert names[:2] == [chosen.name, "schedules/elsewhere"]  # newest first
    assert sorted(names[2:]) == ["schedules/nightly", "schedules/pinned"]
    of_other = plane.stub.ListSchedules(pb.ListSchedulesRequest(pipeline="pipelines/other"))
    assert [s.name for s in of_other.schedules] == ["schedules/elsewhere"]

    expect_error(
        plane.stub.DeleteSchedule,
        pb.DeleteScheduleRequest(name="schedules/nightly", etag="stale"),
        grpc.StatusCode.ABORTED,
    )
    plane.stub.DeleteSchedule(pb.DeleteScheduleRequest(name="schedules/nightly", etag=created.etag))
    err = expect_error(
        plane.stub.GetSchedule,
        pb.GetScheduleRequest(name="schedules/nightly"),
        grpc.StatusCode.NOT_FOUND,
    )
    assert err.reason == "SCHEDULE_NOT_FOUND"


def test_create_is_idempotent_and_ids_are_unique(plane: Plane) -> None:
    request = pb.CreateScheduleRequest(schedule=schedule(), schedule_id="a", request_id="r-1")
    first = plane.stub.CreateSchedule(request).schedule
    assert plane.stub.CreateSchedule(request).schedule == first
    err = expect_error(
        plane.stub.CreateSchedule,
        pb.CreateScheduleRequest(schedule=schedule(), schedule_id="a"),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert err.reason == "SCHEDULE_ALREADY_EXISTS"


# --- update ----------------------------------------------------------------------------------------
def test_update_changes_only_the_masked_fields_and_checks_the_etag(plane: Plane) -> None:
    created = plane.create(display_name="before", max_runs=5)
    change = schedule(every=None, start=None, cron="*/5 * * * *", display_name="ignored")
    change.name = "schedules/s"
    change.etag = created.etag
    updated = plane.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(schedule=change, update_mask=mask("cron"))
    ).schedule
    assert updated.cron.expression == "*/5 * * * *"
    assert not updated.HasField("interval")  # the oneof moved
    assert updated.display_name == "before"  # not in the mask
    assert updated.max_runs == 5
    assert updated.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 5 * MIN
    assert updated.etag != created.etag

    stale = plane.stub.UpdateSchedule
    err = expect_error(
        stale,
        pb.UpdateScheduleRequest(schedule=change, update_mask=mask("cron")),
        grpc.StatusCode.ABORTED,
    )
    assert err.reason == "ETAG_MISMATCH"

    pin = schedule_pb2.Schedule(name="schedules/s", pipeline_version="pipelines/p/versions/1")
    pinned = plane.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(schedule=pin, update_mask=mask("pipeline_version"))
    ).schedule
    assert pinned.pipeline_version == "pipelines/p/versions/1"
    follow = schedule_pb2.Schedule(name="schedules/s", pipeline="pipelines/p")
    unpinned = plane.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(schedule=follow, update_mask=mask("pipeline"))
    ).schedule
    assert unpinned.pipeline_version == ""

    retry = schedule_pb2.Schedule(name="schedules/s")
    retry.retry.max_retries = 3
    after = plane.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(schedule=retry, update_mask=mask("retry.max_retries"))
    ).schedule
    assert after.retry.max_retries == 3
    assert after.cron.expression == "*/5 * * * *"


def test_update_mask_refusals(plane: Plane) -> None:
    plane.create()
    change = schedule_pb2.Schedule(name="schedules/s")
    for paths, expected in (
        ([], "is required"),
        (["colour"], "unknown field path 'colour'"),
        (["paused"], "output only (use PauseSchedule and ResumeSchedule)"),
        (["next_fire_time"], "output only"),
    ):
        err = expect_error(
            plane.stub.UpdateSchedule,
            pb.UpdateScheduleRequest(schedule=change, update_mask=mask(*paths)),
            INVALID,
        )
        assert expected in err.violations["update_mask"]
    cleared = expect_error(  # clearing the trigger leaves the schedule without one
        plane.stub.UpdateSchedule,
        pb.UpdateScheduleRequest(schedule=change, update_mask=mask("interval")),
        INVALID,
    )
    assert "schedule.trigger" in cleared.violations


# --- pause, resume, trigger ------------------------------------------------------------------------
def test_pause_resume_and_trigger_while_paused(plane: Plane) -> None:
    plane.create()
    plane.at(MIN)
    paused = plane.stub.PauseSchedule(
        pb.PauseScheduleRequest(name="schedules/s", note="upstream outage")
    ).schedule
    assert paused.paused
    assert paused.pause_note == "upstream outage"
    plane.at(2 * MIN)
    plane.clock.set(T0 + 2 * MIN + timedelta(seconds=30))
    run = plane.stub.TriggerSchedule(
        pb.TriggerScheduleRequest(name="schedules/s", request_id="t-1")
    ).run
    assert run.schedule == "schedules/s"
    assert scheduled(run) == T0 + 2 * MIN + timedelta(seconds=30)  # the time of the call
    again = plane.stub.TriggerSchedule(
        pb.TriggerScheduleRequest(name="schedules/s", request_id="t-1")
    ).run
    assert again.name == run.name
    second = plane.stub.TriggerSchedule(pb.TriggerScheduleRequest(name="schedules/s")).run
    assert second.name != run.name  # same instant: moved on by a microsecond
    assert scheduled(second) == scheduled(run) + timedelta(microseconds=1)
    plane.at(3 * MIN)
    resumed = plane.stub.ResumeSchedule(
        pb.ResumeScheduleRequest(name="schedules/s", note="fixed")
    ).schedule
    assert (resumed.paused, resumed.pause_note) == (False, "fixed")
    assert resumed.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 4 * MIN
    for active in plane.starter.active("s"):  # triggered runs count for the overlap policy
        plane.starter.finish(active)
    plane.at(4 * MIN)
    fired = [scheduled(r) - T0 for r in plane.starter.runs("s")]
    assert fired == [MIN, scheduled(run) - T0, scheduled(second) - T0, 4 * MIN]
    assert plane.get().runs_started == 2  # triggers are not fires


def test_a_schedule_created_paused_fires_only_once_resumed(plane: Plane) -> None:
    created = plane.create(paused=True)
    assert (created.paused, created.pause_note) == (True, "created paused")
    assert not created.HasField("next_fire_time")
    plane.at(3 * MIN)
    assert plane.starter.runs("s") == []  # three fires passed while paused: none ran
    assert plane.get().paused
    resumed = plane.stub.ResumeSchedule(pb.ResumeScheduleRequest(name="schedules/s")).schedule
    assert resumed.next_fire_time.ToDatetime(tzinfo=UTC) == T0 + 4 * MIN
    plane.at(4 * MIN)
    assert [scheduled(r) - T0 for r in plane.starter.runs("s")] == [4 * MIN]
    unpaused = plane.create("t")  # the default stays: a new schedule runs
    assert (unpaused.paused, unpaused.pause_note) == (False, "")


# --- backfill --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overlap", "started", "queued", "skipped"),
    [
        (Overlap.OVERLAP_POLICY_ALLOW_ALL, 6, 0, 0),
        (Overlap.OVERLAP_POLICY_SKIP, 1, 0, 5),
        (Overlap.OVERLAP_POLICY_BUFFER_ONE, 1, 1, 4),
        (Overlap.OVERLAP_POLICY_BUFFER_ALL, 1, 5, 0),
        (Overlap.OVERLAP_POLICY_CANCEL_OTHER, 1, 0, 5),
    ],
)
def test_backfill_honours_the_overlap_policy(
    plane: Plane, overlap: int, started: int, queued: int, skipped: int
) -> None:
    plane.create(every=10 * MIN, overlap_policy=overlap)
    plane.clock.set(T0 + timedelta(hours=2))
    request = pb.BackfillScheduleRequest(
        name="schedules/s", start_time=stamp(T0 - timedelta(hours=1)), end_time=stamp(T0)
    )
    response = plane.stub.BackfillSchedule(request)
    assert [bool(r.name) for r in response.runs] == [True] * started + [False] * queued
    assert len(response.skipped) == skipped
    assert sorted(times(r.scheduled_time for r in response.runs) + times(response.skipped)) == [
        -50 * MIN, -40 * MIN, -30 * MIN, -20 * MIN, -10 * MIN, timedelta(0)
    ]  # fmt: skip
    assert all(r.schedule == "schedules/s" for r in response.runs)
    again = plane.stub.BackfillSchedule(request)
    assert len(again.existing) == started + queued  # never started twice
    # Skipped fires are decided again: only CANCEL_OTHER starts one (the latest, cancelling).
    assert len(again.runs) == (1 if overlap == Overlap.OVERLAP_POLICY_CANCEL_OTHER else 0)
    if overlap == Overlap.OVERLAP_POLICY_BUFFER_ALL:
        for _ in range(queued):
            plane.starter.finish(plane.starter.active("s")[0])
            plane.clock.set(plane.clock.now() + timedelta(seconds=2))
            plane.scheduler.run_once()
        assert len(plane.starter.runs("s")) == 6


def test_backfill_refusals(plane: Plane) -> None:
    plane.create(every=timedelta(seconds=1))
    for start, end, field, text in (
        (T0 - MIN, T0 + MIN, "end_time", "is in the future"),
        (T0, T0 - MIN, "end_time", "is not after start_time"),
        (T0 - timedelta(hours=1), T0, "end_time", "more than 1000 fire times"),
    ):
        err = expect_error(
            plane.stub.BackfillSchedule,
            pb.BackfillScheduleRequest(
                name="schedules/s", start_time=stamp(start), end_time=stamp(end)
            ),
            INVALID,
        )
        assert text in err.violations[field]
    err = expect_error(
        plane.stub.BackfillSchedule, pb.BackfillScheduleRequest(name="schedules/s"), INVALID
    )
    assert set(err.violations) == {"start_time", "end_time"}


# --- firing through the server ---------------------------------------------------------------------
def test_fires_and_reports_progress(plane: Plane) -> None:
    plane.create(parameters={"x": struct_pb2.Value(string_value="v")}, max_runs=2)
    plane.at(MIN)
    plane.starter.finish(plane.starter.runs("s")[0])
    plane.at(2 * MIN)
    got = plane.get()
    assert got.runs_started == 2
    assert got.last_fire_time.ToDatetime(tzinfo=UTC) == T0 + 2 * MIN
    assert not got.HasField("next_fire_time")  # max_runs reached
    runs = plane.starter.runs("s")
    assert [scheduled(r) - T0 for r in runs] == [MIN, 2 * MIN]
    assert {r.parameters["x"].string_value for r in runs} == {"v"}
    plane.stub.DeleteSchedule(pb.DeleteScheduleRequest(name="schedules/s"))
    assert len(plane.starter.runs("s")) == 2  # the runs stay


def test_a_capped_catch_up_is_visible_on_the_schedule(plane: Plane) -> None:
    window = timedelta(hours=3)
    catchup = schedule_pb2.CATCHUP_POLICY_ALL
    plane.create(catchup_policy=catchup, overlap_policy=Overlap.OVERLAP_POLICY_SKIP)
    plane.create("big", catchup_policy=catchup, overlap_policy=Overlap.OVERLAP_POLICY_SKIP)
    plane.stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=schedule_pb2.Schedule(
                name="schedules/big", catchup_window=duration_pb2.Duration(seconds=3 * 3600)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["catchup_window"]),
        )
    )
    assert plane.get("big").catchup_note == ""
    plane.at(window)  # down for three hours: 180 fires in the window, 100 run
    assert plane.get("s").catchup_note == ""  # the default hour holds 60: under the cap
    note = plane.get("big").catchup_note
    assert "catch-up capped at 100 runs; 80 older missed fires were skipped" in note
    # output only: an update cannot set it
    err = expect_error(
        plane.stub.UpdateSchedule,
        pb.UpdateScheduleRequest(
            schedule=schedule_pb2.Schedule(name="schedules/big"),
            update_mask=field_mask_pb2.FieldMask(paths=["catchup_note"]),
        ),
        INVALID,
    )
    assert "output only" in str(err.violations)


def test_pruned_fire_records_still_keep_a_backfill_from_running_twice(plane: Plane) -> None:
    plane.create()
    for k in (1, 2):
        plane.at(k * MIN)
        plane.starter.finish(plane.starter.runs("s")[-1])
    plane.clock.set(T0 + 3 * MIN)
    trigger = pb.TriggerScheduleRequest(name="schedules/s", request_id="once")
    triggered = plane.stub.TriggerSchedule(trigger).run
    plane.starter.finish(triggered)
    assert plane.scheduler.prune(T0 + timedelta(days=2)) == 2  # both replicas may prune
    assert plane.scheduler.prune(T0 + timedelta(days=2)) == 0
    # A trigger's request_id stays idempotent: its fire record is kept.
    assert [f.request_id for f in plane.scheduler.schedules.fires("s")] == ["once"]
    assert plane.stub.TriggerSchedule(trigger).run.name == triggered.name
    response = plane.stub.BackfillSchedule(
        pb.BackfillScheduleRequest(
            name="schedules/s", start_time=stamp(T0), end_time=stamp(T0 + 2 * MIN)
        )
    )
    assert times(response.existing) == [MIN, 2 * MIN]
    assert list(response.runs) == []
    assert len(plane.starter.runs("s")) == 3


# --- refusals --------------------------------------------------------------------------------------
def test_every_bad_schedule_is_refused_with_its_field(plane: Plane) -> None:
    def once(at: datetime) -> schedule_pb2.Schedule:
        s = schedule(every=None)
        s.once.at.FromDatetime(at)
        return s

    bad: list[tuple[schedule_pb2.Schedule, str, str]] = [
        (schedule(every=None, cron="0 0 3 * * *"), "schedule.cron.expression", "6 fields"),
        (schedule(every=None, cron="*/10 * * * * *"), "schedule.cron.expression", "fields"),
        (schedule(every=None, cron="0 0 30 2 *"), "schedule.cron.expression", "never"),
        (schedule(every=None, cron="61 * * * *"), "schedule.cron.expression", "61"),
        (schedule(every=None, cron="0 25 * * *"), "schedule.cron.expression", "25"),
        (schedule(time_zone="Mars/Olympus"), "schedule.time_zone", "unknown time zone"),
        (schedule(time_zone="europe/berlin"), "schedule.time_zone", "Europe/Berlin"),
        (schedule(end_time=stamp(T0 - MIN)), "schedule.end_time", "not after start_time"),
        (once(T0 - MIN), "schedule.once.at", "in the past"),
        (schedule(every=None), "schedule.trigger", "exactly one trigger"),
        (schedule(every=timedelta(milliseconds=500)), "schedule.interval.every", "1 second"),
        (schedule(max_runs=-1), "schedule.max_runs", "0 (no limit) or more"),
        (schedule(overlap_policy=99), "schedule.overlap_policy", "not an overlap policy"),
        (schedule(catchup_policy=42), "schedule.catchup_policy", "not a catch-up policy"),
        (
            schedule(parameters={"nope": struct_pb2.Value(number_value=1)}),
            "schedule.parameters['nope']",
            "declares no parameter 'nope'",
        ),
        (schedule(pipeline=""), "schedule.pipeline", "give schedule.pipeline"),
        (schedule(pipeline="p"), "schedule.pipeline", "not a pipeline name"),
        (
            schedule(pipeline_version="pipelines/p/versions/x"),
            "schedule.pipeline_version",
            "version number",
        ),
        (
            schedule(retry=schedule_pb2.ScheduleRetryPolicy(backoff_multiplier=0.5)),
            "schedule.retry.backoff_multiplier",
            "at least 1",
        ),
        (
            schedule(retry=schedule_pb2.ScheduleRetryPolicy(max_retries=-1)),
            "schedule.retry.max_retries",
            "0 to 100",
        ),
    ]
    negative = schedule()
    negative.jitter.FromTimedelta(timedelta(seconds=-1))
    bad.append((negative, "schedule.jitter", "must not be negative"))
    zero_window = schedule()
    zero_window.catchup_window.FromTimedelta(timedelta(0))
    bad.append((zero_window, "schedule.catchup_window", "must be positive"))
    for s, field, text in bad:
        err = expect_error(plane.stub.CreateSchedule, pb.CreateScheduleRequest(schedule=s), INVALID)
        assert field in err.violations, (field, err.violations)
        assert text in err.violations[field], (field, err.violations[field])

    err = expect_error(
        plane.stub.CreateSchedule,
        pb.CreateScheduleRequest(schedule=schedule(), schedule_id="Bad_Id"),
        INVALID,
    )
    assert "schedule_id" in err.violations
    for call, request, field in (
        (plane.stub.GetSchedule, pb.GetScheduleRequest(name="nightly"), "name"),
        (plane.stub.ListSchedules, pb.ListSchedulesRequest(page_size=-1), "page_size"),
        (plane.stub.ListSchedules, pb.ListSchedulesRequest(pipeline="p/x"), "pipeline"),
        (plane.stub.ListSchedules, pb.ListSchedulesRequest(page_token="garbage"), "page_token"),
        (plane.stub.PauseSchedule, pb.PauseScheduleRequest(name="s"), "name"),
        (
            plane.stub.UpdateSchedule,
            pb.UpdateScheduleRequest(update_mask=mask("cron")),
            "schedule.name",
        ),
    ):
        assert field in expect_error(call, request, INVALID).violations


def test_missing_things_are_not_found_and_a_pipeline_without_version_is_refused(
    plane: Plane,
) -> None:
    for s, reason in (
        (schedule(pipeline="pipelines/ghost"), "PIPELINE_NOT_FOUND"),
        (schedule(pipeline_version="pipelines/p/versions/9"), "PIPELINE_VERSION_NOT_FOUND"),
    ):
        err = expect_error(
            plane.stub.CreateSchedule,
            pb.CreateScheduleRequest(schedule=s),
            grpc.StatusCode.NOT_FOUND,
        )
        assert err.reason == reason
    plane.repo.create_pipeline("empty", display_name="", description="", labels={})
    err = expect_error(
        plane.stub.CreateSchedule,
        pb.CreateScheduleRequest(schedule=schedule(pipeline="pipelines/empty")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "PIPELINE_HAS_NO_VERSION"
    for call, request in (
        (plane.stub.TriggerSchedule, pb.TriggerScheduleRequest(name="schedules/ghost")),
        (plane.stub.ResumeSchedule, pb.ResumeScheduleRequest(name="schedules/ghost")),
        (plane.stub.DeleteSchedule, pb.DeleteScheduleRequest(name="schedules/ghost")),
    ):
        expect_error(call, request, grpc.StatusCode.NOT_FOUND)


def test_an_update_is_checked_against_the_current_default_version(plane: Plane) -> None:
    plane.create(parameters={"x": struct_pb2.Value(string_value="v")})
    add_version(plane.repo, "p")  # the new default declares no "x"
    change = schedule_pb2.Schedule(name="schedules/s")
    change.jitter.FromTimedelta(timedelta(seconds=1))
    err = expect_error(
        plane.stub.UpdateSchedule,
        pb.UpdateScheduleRequest(schedule=change, update_mask=mask("jitter")),
        INVALID,
    )
    assert "schedule.parameters['x']" in err.violations


# --- the real server ------------------------------------------------------------------------------
def test_schedules_start_real_runs_on_ray(run_plane: ControlPlane, run_api: Api) -> None:
    from tests.integration.test_runs import chain, register

    register(run_api, "sched", chain(2))
    stub = schedule_service_pb2_grpc.ScheduleServiceStub(run_api.channel)
    s = schedule_pb2.Schedule(pipeline="pipelines/sched", max_runs=2)
    s.interval.every.FromTimedelta(timedelta(seconds=1))
    created = stub.CreateSchedule(pb.CreateScheduleRequest(schedule=s, schedule_id="e2e")).schedule
    triggered = stub.TriggerSchedule(
        pb.TriggerScheduleRequest(name=created.name, request_id=str(uuid.uuid4()))
    ).run
    assert triggered.schedule == created.name
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = run_api.runs.ListRuns(rpb.ListRunsRequest(schedule=created.name)).runs
        if len(runs) == 3 and all(r.state == RunState.STATE_SUCCEEDED for r in runs):
            break
        time.sleep(0.2)
    runs = run_api.runs.ListRuns(rpb.ListRunsRequest(schedule=created.name)).runs
    assert sorted(RunState.Name(r.state) for r in runs) == ["STATE_SUCCEEDED"] * 3
    assert len({r.scheduled_time.ToJsonString() for r in runs}) == 3
    assert stub.GetSchedule(pb.GetScheduleRequest(name=created.name)).schedule.runs_started == 2


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def test_delete_pipeline_is_refused_while_a_schedule_uses_it(plane: Plane) -> None:
    plane.create("nightly", cron="0 3 * * *")
    with pytest.raises(FailedPreconditionError) as refused:
        plane.repo.delete_pipeline("p", force=False)
    assert refused.value.reason == "PIPELINE_IN_USE"
    assert "1 schedule" in refused.value.message
    assert plane.get("nightly").name == "schedules/nightly"  # nothing was deleted
    plane.repo.delete_pipeline("p", force=True)
    with pytest.raises(grpc.RpcError) as missing:
        plane.get("nightly")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_delete_pipeline_over_grpc_is_refused_while_a_schedule_uses_it(plane: Plane) -> None:
    plane.create("every-minute")
    plane.at(MIN)  # fires once, at T0 + 1 min
    (run,) = plane.starter.runs("every-minute")
    plane.starter.finish(run)  # so that only the schedule keeps the pipeline in use
    details = expect_error(
        plane.pipelines.DeletePipeline,
        ppb.DeletePipelineRequest(name="pipelines/p"),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.reason == "PIPELINE_IN_USE"
    assert details.metadata == {"pipeline": "pipelines/p", "active_runs": "0", "schedules": "1"}
    assert "is used by 1 schedule;" in details.message
    # nothing was deleted
    assert plane.get("every-minute").name == "schedules/every-minute"
    plane.pipelines.GetPipeline(ppb.GetPipelineRequest(name="pipelines/p"))

    plane.pipelines.DeletePipeline(ppb.DeletePipelineRequest(name="pipelines/p", force=True))
    expect_error(
        plane.pipelines.GetPipeline,
        ppb.GetPipelineRequest(name="pipelines/p"),
        grpc.StatusCode.NOT_FOUND,
    )
    # The forced delete takes the pipeline's schedules with it, so nothing fires any more;
    # the runs they started stay, still naming their schedule.
    err = expect_error(
        plane.stub.GetSchedule,
        pb.GetScheduleRequest(name="schedules/every-minute"),
        grpc.StatusCode.NOT_FOUND,
    )
    assert err.reason == "SCHEDULE_NOT_FOUND"
    assert [s.name for s in plane.stub.ListSchedules(pb.ListSchedulesRequest()).schedules] == []
    plane.at(10 * MIN)
    (kept,) = plane.starter.runs("every-minute")
    assert kept.name == run.name
    assert kept.schedule == "schedules/every-minute"
    assert kept.state == RunState.STATE_SUCCEEDED
    assert len(plane.starter.created) == 1
