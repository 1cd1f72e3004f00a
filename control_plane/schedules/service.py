"""ScheduleService: schedules that start runs from cron, interval and one-time triggers.

Storage is :class:`~control_plane.storage.schedules.ScheduleRepository`; fires are decided
and runs started by the :class:`~control_plane.schedules.scheduler.Scheduler`, which this service
calls for the fires a call makes due (update and pause first decide the fires that are due
under the old settings; trigger and backfill decide their own) and wakes after every change.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import grpc
import sqlalchemy as sa
from google.protobuf import field_mask_pb2, timestamp_pb2

from control_plane import names
from control_plane.auth import caller_name
from control_plane.errors import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
)
from control_plane.rpc import unary
from control_plane.schedules._checks import (
    MAX_REQUEST_ID,
    TARGET,
    TIMING,
    backfill_range,
    check_note,
    config_of,
    config_problems,
    mask_paths,
    parse_schedule_name,
)
from control_plane.schedules.policy import apply_overlap, overlap_of, timing_of
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.timing import (
    DEFAULT_BACKFILL_LIMIT,
    ScheduleTiming,
    fires_between,
    jittered,
    next_fire_after,
)
from control_plane.storage.repository import Repository
from control_plane.storage.schedules import (
    FireDecision,
    FireJob,
    NewSchedule,
    ScheduleRepository,
    ScheduleRow,
    ScheduleTx,
)
from raypipe.v1 import run_pb2, schedule_pb2, schedule_service_pb2_grpc
from raypipe.v1 import schedule_service_pb2 as pb

__all__ = ["ScheduleService"]

_TICK = timedelta(microseconds=1)


class ScheduleService(schedule_service_pb2_grpc.ScheduleServiceServicer):
    """Implements ``raypipe.v1.ScheduleService``.

    Args:
        repository: Pipelines, versions and runs.
        schedules: Schedules and their fires (the same database).
        scheduler: The firing loop: its clock is "now" for every call, and it starts runs.
    """

    def __init__(
        self, repository: Repository, schedules: ScheduleRepository, scheduler: Scheduler
    ) -> None:
        self._repo = repository
        self._schedules = schedules
        self._scheduler = scheduler

    def _now(self) -> datetime:
        return self._scheduler.clock.now()

    # --- create and read ---------------------------------------------------------------------
    @unary
    def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: grpc.ServicerContext
    ) -> pb.CreateScheduleResponse:
        _check_request_id(request.request_id)
        if request.request_id:
            existing = self._schedules.get_by_request_id(request.request_id)
            if existing is not None:
                return pb.CreateScheduleResponse(schedule=existing.to_proto())
        s = request.schedule
        pipeline_id, pinned = self._target(s.pipeline, s.pipeline_version)
        schedule_id = request.schedule_id or f"{pipeline_id[:50]}-{uuid.uuid4().hex[:8]}"
        if not names.PIPELINE_ID.fullmatch(schedule_id):
            raise InvalidArgumentError.for_field(
                "schedule_id",
                f"{schedule_id!r} is not a valid schedule id: it must match [a-z][a-z0-9-]{{0,62}} "
                "(lowercase letters, digits and hyphens, starting with a letter)",
            )
        config = config_of(s)
        now = self._now()
        self._check(config, schedule_id, pipeline_id, pinned, now=now)
        next_fire, next_due = _next_fire(timing_of(config, schedule_id), now, anchor=now)
        new = NewSchedule(
            id=schedule_id,
            pipeline_id=pipeline_id,
            version_number=pinned,
            config=config,
            next_fire_time=next_fire,
            next_due_time=next_due,
            create_time=now,
            request_id=request.request_id,
            paused=s.paused,
            pause_note="created paused" if s.paused else "",
            creator=caller_name(),
        )
        try:
            with self._schedules.transaction() as tx:
                created = tx.insert(new)
        except sa.exc.IntegrityError as exc:
            if request.request_id:
                again = self._schedules.get_by_request_id(request.request_id)
                if again is not None:  # the same request, made concurrently
                    return pb.CreateScheduleResponse(schedule=again.to_proto())
            self._repo.get_pipeline(pipeline_id)  # NOT_FOUND if it was deleted meanwhile
            raise AlreadyExistsError(
                f"schedule 'schedules/{schedule_id}' already exists",
                reason="SCHEDULE_ALREADY_EXISTS",
                metadata={"schedule": f"schedules/{schedule_id}"},
            ) from exc
        self._scheduler.wake()
        return pb.CreateScheduleResponse(schedule=created.to_proto())

    @unary
    def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.ServicerContext
    ) -> pb.GetScheduleResponse:
        row = self._schedules.get(parse_schedule_name(request.name))
        return pb.GetScheduleResponse(schedule=row.to_proto())

    @unary
    def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.ServicerContext
    ) -> pb.ListSchedulesResponse:
        page_size = names.page_size(request.page_size)
        pipeline_id = (
            names.parse_pipeline_name(request.pipeline, "pipeline") if request.pipeline else ""
        )
        page = self._schedules.list_schedules(
            page_size=page_size, page_token=request.page_token, pipeline_id=pipeline_id
        )
        return pb.ListSchedulesResponse(
            schedules=[row.to_proto() for row in page.items],
            next_page_token=page.next_page_token,
        )

    # --- change ------------------------------------------------------------------------------
    @unary
    def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: grpc.ServicerContext
    ) -> pb.UpdateScheduleResponse:
        schedule_id = parse_schedule_name(request.schedule.name, "schedule.name")
        paths = mask_paths(request.update_mask)
        now = self._now()
        with self._schedules.transaction() as tx:
            row = self._lock(tx, schedule_id, request.schedule.etag, "schedule.etag")
            jobs, row = self._decide_due(tx, row, now)
            pipeline_id, pinned = self._merged_target(row, request.schedule, paths)
            config = schedule_pb2.Schedule()
            config.CopyFrom(row.config)
            mask = field_mask_pb2.FieldMask(paths=sorted(paths - TARGET))
            mask.MergeMessage(
                config_of(request.schedule), config, replace_message_field=True,
                replace_repeated_field=True,
            )  # fmt: skip
            retimed = any(p.split(".")[0] in TIMING for p in paths)
            self._check(config, schedule_id, pipeline_id, pinned, now=now if retimed else None)
            values: dict[str, object] = {
                "config": config,
                "pipeline_id": pipeline_id,
                "version_number": pinned,
            }
            if retimed or paths & {"max_runs", "jitter"}:
                # Fire times moved: the next fire is the first of the new settings after
                # now (fires due under the old ones were decided above). A new jitter only
                # moves the due time of the fire that is next already.
                restart = retimed or "max_runs" in paths
                through = max(row.fired_through, now) if restart else row.fired_through
                values.update(_cursor_after(timing_of(config, schedule_id), through, row))
            tx.update(row, user_change=True, now=now, updater=caller_name(), **values)
            updated = tx.reread(schedule_id)
        self._scheduler.start_jobs(jobs)
        self._scheduler.wake()
        return pb.UpdateScheduleResponse(schedule=updated.to_proto())

    @unary
    def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: grpc.ServicerContext
    ) -> pb.DeleteScheduleResponse:
        schedule_id = parse_schedule_name(request.name)
        with self._schedules.transaction() as tx:
            row = self._lock(tx, schedule_id, request.etag, "etag")
            tx.delete(row)
        return pb.DeleteScheduleResponse()

    @unary
    def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PauseScheduleResponse:
        return pb.PauseScheduleResponse(schedule=self._set_paused(request, True).to_proto())

    @unary
    def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: grpc.ServicerContext
    ) -> pb.ResumeScheduleResponse:
        return pb.ResumeScheduleResponse(schedule=self._set_paused(request, False).to_proto())

    def _set_paused(
        self, request: pb.PauseScheduleRequest | pb.ResumeScheduleRequest, paused: bool
    ) -> ScheduleRow:
        schedule_id = parse_schedule_name(request.name)
        check_note(request.note)
        now = self._now()
        jobs: list[FireJob] = []
        with self._schedules.transaction() as tx:
            row = tx.lock(schedule_id)
            values: dict[str, object] = {"paused": paused, "pause_note": request.note}
            if paused:
                # A fire that is due already belongs before the pause.
                jobs, row = self._decide_due(tx, row, now)
            elif row.paused:
                # Fires missed while paused are dropped: fire again after now.
                timing = timing_of(row.config, schedule_id)
                values.update(_cursor_after(timing, max(row.fired_through, now), row))
            tx.update(row, user_change=True, now=now, updater=caller_name(), **values)
            changed = tx.reread(schedule_id)
        if paused:
            self._scheduler.start_jobs(jobs)
        else:
            self._scheduler.wake()
        return changed

    # --- runs now and for the past -------------------------------------------------------------
    @unary
    def TriggerSchedule(
        self, request: pb.TriggerScheduleRequest, context: grpc.ServicerContext
    ) -> pb.TriggerScheduleResponse:
        schedule_id = parse_schedule_name(request.name)
        _check_request_id(request.request_id)
        now = self._now()
        with self._schedules.transaction() as tx:
            row = tx.lock(schedule_id)
            job = self._triggered(tx, row, request.request_id)
            if job is None:
                _require_version(row)
                # The call's time is the run's scheduled_time; a fire recorded at that very
                # microsecond (a nominal fire, another trigger) moves it on by one.
                when = now
                while True:
                    jobs, existing = tx.record(
                        row,
                        [FireDecision(when, "pending")],
                        origin="trigger",
                        now=now,
                        lease_until=now + self._scheduler.lease,
                        request_id=request.request_id or None,
                    )
                    if not existing:
                        break
                    when += _TICK
                job = jobs[0]
        if job.fire.run_id is not None and job.fire.state != "pending":
            return pb.TriggerScheduleResponse(run=self._repo.get_run(job.fire.run_id))
        run = self._scheduler.start_job(job, raise_errors=True)
        self._scheduler.wake()
        return pb.TriggerScheduleResponse(run=run)

    @unary
    def BackfillSchedule(
        self, request: pb.BackfillScheduleRequest, context: grpc.ServicerContext
    ) -> pb.BackfillScheduleResponse:
        schedule_id = parse_schedule_name(request.name)
        now = self._now()
        start, end = backfill_range(request, now)
        with self._schedules.transaction() as tx:
            row = tx.lock(schedule_id)
            _require_version(row)
            timing = timing_of(row.config, schedule_id)
            # The trigger's nominal times in the range, whether or not the schedule's own
            # start_time and end_time include them: a backfill is for the times it names.
            found = fires_between(
                timing, start, end, anchor=row.create_time, bounded=False,
                limit=DEFAULT_BACKFILL_LIMIT,
            )  # fmt: skip
            if found.truncated:
                raise InvalidArgumentError.for_field(
                    "end_time",
                    f"the range holds more than {DEFAULT_BACKFILL_LIMIT} fire times; "
                    "backfill it in smaller ranges",
                )
            recorded = tx.fires_at(schedule_id, found.fires)
            # Fires the overlap policy skipped never ran: a backfill may decide them again.
            tx.forget(f for f in recorded.values() if f.state == "skipped")
            existing = sorted(
                {t for t, f in recorded.items() if f.state != "skipped"}
                # runs whose fire records were pruned (Scheduler.fire_retention)
                | tx.times_with_runs(row, (t for t in found.fires if t not in recorded))
            )
            todo = [t for t in found.fires if t not in set(existing)]
            decisions = apply_overlap(
                overlap_of(row.config), todo, tx.occupancy([row])[schedule_id]
            )
            jobs, raced = tx.record(
                row,
                decisions,
                origin="backfill",
                now=now,
                lease_until=now + self._scheduler.lease,
            )
        started = {job.fire.scheduled_time: self._scheduler.start_job(job) for job in jobs}
        self._scheduler.wake()
        response = pb.BackfillScheduleResponse()
        for decision in decisions:
            t = decision.scheduled_time
            if t in raced:
                existing.append(t)
            elif decision.state == "skipped":
                _stamp(response.skipped.add(), t)
            else:
                # A buffered fire (or one whose start failed and will be repaired) has no
                # run yet: it is listed with its schedule, version and scheduled_time only.
                response.runs.append(started.get(t) or _queued_run(row, t))
        for t in sorted(existing):
            _stamp(response.existing.add(), t)
        return response

    # --- helpers -------------------------------------------------------------------------------
    def _lock(self, tx: ScheduleTx, schedule_id: str, etag: str, field: str) -> ScheduleRow:
        row = tx.lock(schedule_id)
        if etag and etag != row.etag:
            raise AbortedError(
                f"schedule '{row.name}' changed since etag {etag!r} was read (now "
                f"{row.etag!r}): read it again and repeat the change",
                reason="ETAG_MISMATCH",
                metadata={"schedule": row.name, "field": field},
            )
        return row

    def _decide_due(
        self, tx: ScheduleTx, row: ScheduleRow, now: datetime
    ) -> tuple[list[FireJob], ScheduleRow]:
        """Decide the fires due under the schedule's current settings before a change."""
        if row.paused or row.next_due_time is None or row.next_due_time > now:
            return [], row
        jobs = self._scheduler.decide(tx, [row], now)
        return jobs, tx.reread(row.id)

    def _triggered(self, tx: ScheduleTx, row: ScheduleRow, request_id: str) -> FireJob | None:
        """The fire an earlier TriggerSchedule with this request_id recorded, if any."""
        if not request_id:
            return None
        fire = tx.fire_by_request_id(request_id)
        if fire is None:
            return None
        if fire.schedule_id != row.id:
            raise InvalidArgumentError.for_field(
                "request_id", f"was used for a call on schedule 'schedules/{fire.schedule_id}'"
            )
        if fire.state == "failed":
            raise FailedPreconditionError(
                f"the run of this trigger could not start: {fire.message}",
                reason="SCHEDULE_FIRE_FAILED",
            )
        return FireJob(fire, row.pipeline_id, row.config)

    def _target(self, pipeline: str, version: str) -> tuple[str, int | None]:
        """(pipeline id, pinned version or None) of a schedule's pipeline fields."""
        if version:
            pipeline_id, number = names.parse_version_name(version, "schedule.pipeline_version")
            if pipeline and names.parse_pipeline_name(pipeline, "schedule.pipeline") != pipeline_id:
                raise InvalidArgumentError.for_field(
                    "schedule.pipeline_version", f"{version!r} is not a version of {pipeline!r}"
                )
            return pipeline_id, number
        if not pipeline:
            raise InvalidArgumentError.for_field(
                "schedule.pipeline",
                "give schedule.pipeline (each fire runs its default version) or "
                "schedule.pipeline_version (a pinned version)",
            )
        return names.parse_pipeline_name(pipeline, "schedule.pipeline"), None

    def _merged_target(
        self, row: ScheduleRow, given: schedule_pb2.Schedule, paths: set[str]
    ) -> tuple[str, int | None]:
        if "pipeline_version" in paths:
            if given.pipeline_version:
                return self._target(
                    given.pipeline if "pipeline" in paths else "", given.pipeline_version
                )
            pipeline = given.pipeline if "pipeline" in paths else f"pipelines/{row.pipeline_id}"
            return self._target(pipeline, "")  # unpinned: follow the default version
        if "pipeline" in paths:
            # Naming the pipeline makes the schedule follow its default version.
            return self._target(given.pipeline, "")
        return row.pipeline_id, row.version_number

    def _check(
        self,
        config: schedule_pb2.Schedule,
        schedule_id: str,
        pipeline_id: str,
        pinned: int | None,
        *,
        now: datetime | None,
    ) -> None:
        """Raise INVALID_ARGUMENT listing every problem of a schedule's settings, NOT_FOUND
        for a missing pipeline or version, FAILED_PRECONDITION for a pipeline without one."""
        problems = config_problems(config, schedule_id, now)
        # The version the next fire would run: its spec declares the parameters.
        if pinned is not None:
            version = self._repo.get_version(pipeline_id, pinned)
        else:
            default = self._repo.get_pipeline(pipeline_id).default_version
            if not default:
                raise FailedPreconditionError(
                    f"pipeline 'pipelines/{pipeline_id}' has no version yet: create one "
                    "before scheduling it",
                    reason="PIPELINE_HAS_NO_VERSION",
                )
            version = self._repo.get_version(*names.parse_version_name(default))
        declared = version.spec.parameters
        problems.extend(
            FieldViolation(
                f"schedule.parameters[{key!r}]",
                f"{version.name} declares no parameter {key!r} (declared: "
                f"{', '.join(sorted(declared)) or 'none'})",
            )
            for key in sorted(config.parameters)
            if key not in declared
        )
        if problems:
            raise InvalidArgumentError.from_violations(problems)


def _check_request_id(request_id: str) -> None:
    problems = names.text_violations(request_id, "request_id", MAX_REQUEST_ID)
    if problems:
        raise InvalidArgumentError.from_violations(problems)


def _next_fire(
    timing: ScheduleTiming, after: datetime, *, anchor: datetime, runs_started: int = 0
) -> tuple[datetime | None, datetime | None]:
    """The first nominal fire time after ``after``, and when it is due (plus jitter)."""
    fire = next_fire_after(timing, after, anchor=anchor, runs_started=runs_started)
    return fire, (jittered(timing, fire, anchor=anchor) if fire else None)


def _cursor_after(timing: ScheduleTiming, through: datetime, row: ScheduleRow) -> dict[str, object]:
    """The cursor columns of ``row`` when every fire up to ``through`` counts as handled."""
    next_fire, next_due = _next_fire(
        timing, through, anchor=row.create_time, runs_started=row.runs_started
    )
    return {"fired_through": through, "next_fire_time": next_fire, "next_due_time": next_due}


def _require_version(row: ScheduleRow) -> None:
    if row.version_to_run() is None:
        raise FailedPreconditionError(
            f"pipeline 'pipelines/{row.pipeline_id}' has no version to run",
            reason="PIPELINE_HAS_NO_VERSION",
        )


def _queued_run(row: ScheduleRow, scheduled_time: datetime) -> run_pb2.Run:
    run = run_pb2.Run(pipeline=f"pipelines/{row.pipeline_id}", schedule=row.name)
    version = row.version_to_run()
    if version is not None:
        run.pipeline_version = f"pipelines/{row.pipeline_id}/versions/{version}"
    _stamp(run.scheduled_time, scheduled_time)
    return run


def _stamp(field: timestamp_pb2.Timestamp, value: datetime) -> None:
    field.FromDatetime(value)
