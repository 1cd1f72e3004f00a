"""The checks of ScheduleService's requests: a schedule's settings with a field path per
problem, update masks, notes and backfill ranges, all refused with INVALID_ARGUMENT."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from control_plane import names
from control_plane.errors import FieldViolation, InvalidArgumentError
from control_plane.schedules.policy import timing_of
from control_plane.schedules.timing import validate
from raypipe.v1 import schedule_pb2
from raypipe.v1 import schedule_service_pb2 as pb

__all__ = [
    "MAX_REQUEST_ID",
    "OUTPUT_ONLY",
    "TARGET",
    "TIMING",
    "UPDATABLE",
    "backfill_range",
    "check_note",
    "config_of",
    "config_problems",
    "mask_paths",
    "parse_schedule_name",
]

MAX_REQUEST_ID = 128
MAX_NOTE = 1024
MAX_RETRIES = 100

# Update mask paths: every user-settable field, and the fields inside its messages.
UPDATABLE = frozenset(
    {
        "pipeline",
        "pipeline_version",
        "parameters",
        "cron",
        "cron.expression",
        "interval",
        "interval.every",
        "once",
        "once.at",
        "time_zone",
        "start_time",
        "end_time",
        "max_runs",
        "overlap_policy",
        "catchup_policy",
        "catchup_window",
        "jitter",
        "retry",
        "retry.max_retries",
        "retry.initial_backoff",
        "retry.backoff_multiplier",
        "retry.max_backoff",
        "display_name",
    }
)
OUTPUT_ONLY = frozenset(
    {
        "name",
        "paused",
        "pause_note",
        "next_fire_time",
        "last_fire_time",
        "runs_started",
        "catchup_note",
        "create_time",
        "update_time",
        "etag",
    }
)
# Changes that move fire times: the next fire is recomputed from now (fires due under the
# old settings are decided first), and the refusals that need the current time apply.
TIMING = frozenset({"cron", "interval", "once", "time_zone", "start_time", "end_time"})
TARGET = frozenset({"pipeline", "pipeline_version"})
# Oneof members and scalar fields set on the stored configuration.
_CONFIG_FIELDS = tuple(
    f.name
    for f in schedule_pb2.Schedule.DESCRIPTOR.fields
    if f.name not in OUTPUT_ONLY and f.name not in TARGET
)
_TS_MIN, _TS_MAX = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31, as Timestamp allows
_DURATION_MAX = 315576000000  # about 10,000 years, as Duration allows


def parse_schedule_name(value: str, field: str = "name") -> str:
    """``schedules/{id}`` -> id."""
    if not value:
        raise InvalidArgumentError.for_field(
            field, "is required (expected schedules/{schedule_id})"
        )
    prefix, _, rest = value.partition("/")
    if prefix != "schedules" or not names.PIPELINE_ID.fullmatch(rest):
        raise InvalidArgumentError.for_field(
            field, f"{value!r} is not a schedule name (expected schedules/{{schedule_id}})"
        )
    return rest


# --- settings ------------------------------------------------------------------------------------
def config_of(schedule: schedule_pb2.Schedule) -> schedule_pb2.Schedule:
    """The user-settable fields of a request's Schedule (output-only ones are ignored)."""
    config = schedule_pb2.Schedule()
    for name in _CONFIG_FIELDS:
        field = schedule_pb2.Schedule.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and not _is_map(field):
            if schedule.HasField(name):
                getattr(config, name).CopyFrom(getattr(schedule, name))
        elif _is_map(field):
            for key, value in getattr(schedule, name).items():
                getattr(config, name)[key].CopyFrom(value)
        else:
            setattr(config, name, getattr(schedule, name))
    return config


def _is_map(field: object) -> bool:
    message = getattr(field, "message_type", None)
    return bool(message is not None and message.GetOptions().map_entry)


def config_problems(
    config: schedule_pb2.Schedule, schedule_id: str, now: datetime | None
) -> list[FieldViolation]:
    """Every problem of a schedule's settings, each with its field path."""
    problems = [
        *_time_problems(config),
        *names.text_violations(
            config.display_name, "schedule.display_name", names.MAX_DISPLAY_NAME
        ),
    ]
    if config.overlap_policy not in schedule_pb2.OverlapPolicy.values():
        problems.append(
            FieldViolation(
                "schedule.overlap_policy",
                f"{config.overlap_policy} is not an overlap policy (SKIP, BUFFER_ONE, "
                "BUFFER_ALL, CANCEL_OTHER or ALLOW_ALL)",
            )
        )
    if config.catchup_policy not in schedule_pb2.CatchupPolicy.values():
        problems.append(
            FieldViolation(
                "schedule.catchup_policy",
                f"{config.catchup_policy} is not a catch-up policy (NONE, LATEST or ALL)",
            )
        )
    problems.extend(_retry_problems(config.retry))
    if config.WhichOneof("trigger") is None:
        problems.append(
            FieldViolation(
                "schedule.trigger", "a schedule needs exactly one trigger: cron, interval or once"
            )
        )
    if problems:
        return problems  # the timing cannot be built from malformed values
    timing = timing_of(config, schedule_id)
    return [FieldViolation(p.field, p.description) for p in validate(timing, now=now)]


def _time_problems(config: schedule_pb2.Schedule) -> Iterable[FieldViolation]:
    stamps = {"start_time": config.start_time, "end_time": config.end_time}
    if config.HasField("once"):
        stamps["once.at"] = config.once.at
    for path, stamp in stamps.items():
        if not (_TS_MIN <= stamp.seconds <= _TS_MAX and 0 <= stamp.nanos < 1_000_000_000):
            yield FieldViolation(f"schedule.{path}", "is not a valid timestamp")
    durations = {
        "catchup_window": config.catchup_window,
        "jitter": config.jitter,
        "retry.initial_backoff": config.retry.initial_backoff,
        "retry.max_backoff": config.retry.max_backoff,
    }
    if config.HasField("interval"):
        durations["interval.every"] = config.interval.every
    for path, duration in durations.items():
        if not _valid_duration(duration):
            yield FieldViolation(f"schedule.{path}", "is not a valid duration")


def _valid_duration(d: duration_pb2.Duration) -> bool:
    same_sign = d.seconds == 0 or d.nanos == 0 or (d.seconds > 0) == (d.nanos > 0)
    return abs(d.seconds) <= _DURATION_MAX and abs(d.nanos) < 1_000_000_000 and same_sign


def _retry_problems(retry: schedule_pb2.ScheduleRetryPolicy) -> Iterable[FieldViolation]:
    if not 0 <= retry.max_retries <= MAX_RETRIES:
        yield FieldViolation(
            "schedule.retry.max_retries", f"must be 0 to {MAX_RETRIES}, got {retry.max_retries}"
        )
    multiplier = retry.backoff_multiplier
    if not math.isfinite(multiplier) or (multiplier != 0 and multiplier < 1):
        yield FieldViolation(
            "schedule.retry.backoff_multiplier",
            f"must be at least 1 (or unset for 2), got {multiplier}",
        )
    for path, duration in (
        ("initial_backoff", retry.initial_backoff),
        ("max_backoff", retry.max_backoff),
    ):
        if duration.seconds < 0 or duration.nanos < 0:
            yield FieldViolation(f"schedule.retry.{path}", "must not be negative")


def mask_paths(mask: field_mask_pb2.FieldMask) -> set[str]:
    if not mask.paths:
        raise InvalidArgumentError.for_field(
            "update_mask", "is required: name the fields to change, such as 'cron'"
        )
    paths: set[str] = set()
    problems = []
    for path in mask.paths:
        if path == "*":
            paths.update(p for p in UPDATABLE if "." not in p)
        elif path in UPDATABLE:
            paths.add(path)
        elif path in OUTPUT_ONLY:
            hint = " (use PauseSchedule and ResumeSchedule)" if "pause" in path else ""
            problems.append(FieldViolation("update_mask", f"{path!r} is output only{hint}"))
        else:
            problems.append(
                FieldViolation(
                    "update_mask",
                    f"unknown field path {path!r}; updatable: "
                    + ", ".join(sorted(p for p in UPDATABLE if "." not in p)),
                )
            )
    if problems:
        raise InvalidArgumentError.from_violations(problems)
    return paths


def check_note(note: str) -> None:
    problems = names.text_violations(note, "note", MAX_NOTE)
    if problems:
        raise InvalidArgumentError.from_violations(problems)


def backfill_range(request: pb.BackfillScheduleRequest, now: datetime) -> tuple[datetime, datetime]:
    problems = []
    for path in ("start_time", "end_time"):
        stamp: timestamp_pb2.Timestamp = getattr(request, path)
        if not request.HasField(path):
            problems.append(FieldViolation(path, "is required"))
        elif not (_TS_MIN <= stamp.seconds <= _TS_MAX and 0 <= stamp.nanos < 1_000_000_000):
            problems.append(FieldViolation(path, "is not a valid timestamp"))
    if problems:
        raise InvalidArgumentError.from_violations(problems)
    start = request.start_time.ToDatetime(tzinfo=UTC)
    end = request.end_time.ToDatetime(tzinfo=UTC)
    if end <= start:
        problems.append(
            FieldViolation(
                "end_time", f"{end.isoformat()} is not after start_time {start.isoformat()}"
            )
        )
    elif end > now:
        problems.append(
            FieldViolation(
                "end_time",
                f"{end.isoformat()} is in the future (now is {now.isoformat()}): a backfill "
                "covers the past; the schedule fires the future itself",
            )
        )
    if problems:
        raise InvalidArgumentError.from_violations(problems)
    return start, end
