"""The value types of the scheduler's storage, and their conversion from table rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from control_plane.errors import NotFoundError
from control_plane.storage._convert import to_micros
from raypipe.v1 import schedule_pb2

__all__ = [
    "Advance",
    "Fire",
    "FireDecision",
    "FireJob",
    "NewSchedule",
    "Occupancy",
    "ScheduleRow",
    "Wakeup",
    "fire_from_row",
    "job_from_row",
    "schedule_from_row",
    "schedule_not_found",
]


@dataclass(frozen=True)
class ScheduleRow:
    """A stored schedule. ``config`` holds the user-settable fields of the Schedule message."""

    id: str
    pipeline_id: str
    version_number: int | None
    config: schedule_pb2.Schedule
    paused: bool
    pause_note: str
    fired_through: datetime
    next_fire_time: datetime | None
    next_due_time: datetime | None
    last_fire_time: datetime | None
    runs_started: int
    catchup_note: str
    revision: int
    create_time: datetime
    update_time: datetime
    # The pipeline's default version now (joined from pipelines), for fires that follow it.
    default_version: int | None = None
    creator: str = ""
    updater: str = ""

    @property
    def name(self) -> str:
        return f"schedules/{self.id}"

    @property
    def etag(self) -> str:
        # The creation time makes a stale etag never match a schedule re-created under the
        # same id.
        key = f"{self.id}|{to_micros(self.create_time)}|{self.revision}".encode()
        return hashlib.blake2b(key, digest_size=8).hexdigest()

    def version_to_run(self) -> int | None:
        """The pinned version, or else the pipeline's default version as of now."""
        return self.version_number if self.version_number is not None else self.default_version

    def to_proto(self) -> schedule_pb2.Schedule:
        """The API's Schedule: the stored configuration plus the output-only fields."""
        out = schedule_pb2.Schedule()
        out.CopyFrom(self.config)
        out.name = self.name
        out.pipeline = f"pipelines/{self.pipeline_id}"
        if self.version_number is not None:
            out.pipeline_version = f"pipelines/{self.pipeline_id}/versions/{self.version_number}"
        out.paused = self.paused
        out.pause_note = self.pause_note
        # While paused the stored next fire means nothing: resuming recomputes it from then.
        if self.next_fire_time is not None and not self.paused:
            out.next_fire_time.FromDatetime(self.next_fire_time)
        if self.last_fire_time is not None:
            out.last_fire_time.FromDatetime(self.last_fire_time)
        out.runs_started = self.runs_started
        out.catchup_note = self.catchup_note
        out.create_time.FromDatetime(self.create_time)
        out.update_time.FromDatetime(self.update_time)
        out.etag = self.etag
        out.creator = self.creator
        out.updater = self.updater
        return out


@dataclass(frozen=True)
class NewSchedule:
    """What CreateSchedule stores."""

    id: str
    pipeline_id: str
    version_number: int | None
    config: schedule_pb2.Schedule
    next_fire_time: datetime | None
    next_due_time: datetime | None
    create_time: datetime
    request_id: str = ""
    paused: bool = False
    pause_note: str = ""
    creator: str = ""


@dataclass(frozen=True)
class Fire:
    """A row of ``schedule_fires`` (see :mod:`._schedule_tables` for the states)."""

    schedule_id: str
    scheduled_time: datetime
    origin: str
    state: str
    attempt: int
    version_number: int | None
    run_id: str | None
    cancel_others: bool
    retry_at: datetime | None
    request_id: str | None
    message: str


@dataclass(frozen=True)
class FireJob:
    """A fire to start, with what starting it needs from its schedule."""

    fire: Fire
    pipeline_id: str
    config: schedule_pb2.Schedule


@dataclass(frozen=True)
class Occupancy:
    """What holds a schedule busy for the overlap policies.

    Attributes:
        active_runs: Ids of its runs that are not terminal.
        waiting: Its fires decided but not running yet (pending, or between retries).
        buffered: Its buffered fires.
    """

    active_runs: tuple[str, ...] = ()
    waiting: int = 0
    buffered: int = 0

    @property
    def occupied(self) -> bool:
        """Whether an earlier run of the schedule is still going (or about to)."""
        return bool(self.active_runs) or self.waiting > 0


@dataclass(frozen=True)
class FireDecision:
    """What to record for one nominal time: ``pending`` (start), ``buffered`` or ``skipped``."""

    scheduled_time: datetime
    state: str
    cancel_others: bool = False
    message: str = ""


@dataclass(frozen=True)
class Advance:
    """Where a schedule's cursor moves after its due fires were decided."""

    fired_through: datetime
    next_fire_time: datetime | None
    next_due_time: datetime | None
    last_fire_time: datetime | None
    catchup_note: str | None = None  # None keeps the current note


@dataclass(frozen=True)
class Wakeup:
    """What the loop waits for next.

    Attributes:
        next_due: The earliest due time of an active schedule.
        next_retry: The earliest retry of a failed fire.
        next_lease: The earliest lease of a pending fire to run out.
        watching: Whether runs must be watched (buffered fires, retries on failure).
    """

    next_due: datetime | None
    next_retry: datetime | None
    next_lease: datetime | None
    watching: bool


def schedule_not_found(schedule_id: str) -> NotFoundError:
    name = f"schedules/{schedule_id}"
    return NotFoundError(
        f"schedule '{name}' not found", reason="SCHEDULE_NOT_FOUND", metadata={"schedule": name}
    )


def schedule_from_row(row: Any) -> ScheduleRow:
    return ScheduleRow(
        id=row.id,
        pipeline_id=row.pipeline_id,
        version_number=row.version_number,
        config=schedule_pb2.Schedule.FromString(row.config),
        paused=bool(row.paused),
        pause_note=row.pause_note,
        fired_through=row.fired_through,
        next_fire_time=row.next_fire_time,
        next_due_time=row.next_due_time,
        last_fire_time=row.last_fire_time,
        runs_started=int(row.runs_started),
        catchup_note=row.catchup_note,
        revision=int(row.revision),
        create_time=row.create_time,
        update_time=row.update_time,
        default_version=row.default_version,
        creator=row.creator,
        updater=row.updater,
    )


def job_from_row(row: Any) -> FireJob:
    return FireJob(
        fire_from_row(row), row.s_pipeline_id, schedule_pb2.Schedule.FromString(row.config)
    )


def fire_from_row(row: Any) -> Fire:
    return Fire(
        schedule_id=row.schedule_id,
        scheduled_time=row.scheduled_time,
        origin=row.origin,
        state=row.state,
        attempt=int(row.attempt),
        version_number=row.version_number,
        run_id=row.run_id,
        cancel_others=bool(row.cancel_others),
        retry_at=row.retry_at,
        request_id=row.request_id,
        message=row.message,
    )


def fire_from_values(values: dict[str, Any]) -> Fire:
    """A Fire from the values of a row being inserted."""
    return Fire(**{k: values[k] for k in Fire.__dataclass_fields__})
