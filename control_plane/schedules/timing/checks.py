"""The validation of a schedule's timing: every problem at once, each with its field path, by
the rules :mod:`.triggers` states (and, at creation, that the schedule can fire at all, which
asks :mod:`.firetimes`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from control_plane.schedules.timing.cron import CronError, parse_cron
from control_plane.schedules.timing.firetimes import next_fire_after
from control_plane.schedules.timing.triggers import (
    MIN_INTERVAL,
    CatchupPolicy,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    ScheduleTiming,
    zone_problem,
)

__all__ = ["Problem", "validate"]


@dataclass(frozen=True)
class Problem:
    """One problem with one field, such as ``schedule.cron.expression``; maps 1:1 onto a
    ``google.rpc.BadRequest.FieldViolation``."""

    field: str
    description: str


def validate(
    timing: ScheduleTiming, *, now: datetime | None, prefix: str = "schedule"
) -> list[Problem]:
    """Every problem with ``timing``, each with its field path, all at once.

    Args:
        timing: The trigger and options to check.
        now: The current time. Given at creation (and when the trigger or its bounds
            change), it also refuses timings that can no longer fire: a once trigger in
            the past, an ``end_time`` in the past, no fire before ``end_time``. None
            skips those checks, for re-validating a schedule that already ran.
        prefix: Field path of the schedule in the request.

    Returns:
        The problems found, in field order; empty if the timing is valid.
    """
    problems: list[Problem] = []

    def add(field: str, description: str) -> None:
        problems.append(Problem(f"{prefix}.{field}", description))

    if now is not None and not _is_aware(now):
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    trigger = timing.trigger
    if isinstance(trigger, CronTrigger):
        if not isinstance(trigger.expression, str):
            add("cron.expression", "the cron expression must be a string")
        else:
            try:
                parse_cron(trigger.expression)
            except CronError as exc:
                for problem in exc.problems:
                    add("cron.expression", f"cron expression {trigger.expression!r}: {problem}")
    elif isinstance(trigger, IntervalTrigger):
        if not isinstance(trigger.every, timedelta):
            add("interval.every", "the interval must be a duration")
        elif trigger.every < MIN_INTERVAL:
            add(
                "interval.every",
                f"the interval must be at least 1 second, got {_duration(trigger.every)}",
            )
    elif isinstance(trigger, OnceTrigger):
        if not _is_aware(trigger.at):
            add("once.at", "the time must be timezone-aware (an instant, such as UTC)")
        elif now is not None and trigger.at <= now:
            add(
                "once.at",
                f"{_iso(trigger.at)} is in the past (now is {_iso(now)}): a one-time "
                "trigger must be in the future",
            )
    else:
        add("trigger", "a schedule needs exactly one trigger: cron, interval or once")

    zone = zone_problem(timing.time_zone)
    if zone is not None:
        add("time_zone", zone)

    start, end = timing.start_time, timing.end_time
    if start is not None and not _is_aware(start):
        add("start_time", "start_time must be timezone-aware (an instant, such as UTC)")
        start = None
    if end is not None and not _is_aware(end):
        add("end_time", "end_time must be timezone-aware (an instant, such as UTC)")
        end = None
    if start is not None and end is not None and end <= start:
        add("end_time", f"end_time {_iso(end)} is not after start_time {_iso(start)}")
    elif end is not None and now is not None and end <= now:
        add(
            "end_time",
            f"end_time {_iso(end)} is in the past (now is {_iso(now)}): the schedule would "
            "never fire",
        )

    if isinstance(timing.max_runs, bool) or not isinstance(timing.max_runs, int):
        add("max_runs", "max_runs must be an integer")
    elif timing.max_runs < 0:
        add("max_runs", f"max_runs must be 0 (no limit) or more, got {timing.max_runs}")
    if not isinstance(timing.catchup_policy, CatchupPolicy):
        add("catchup_policy", "catchup_policy must be NONE, LATEST or ALL")
    if not isinstance(timing.catchup_window, timedelta):
        add("catchup_window", "catchup_window must be a duration")
    elif timing.catchup_window <= timedelta(0):
        add(
            "catchup_window",
            f"catchup_window must be positive, got {_duration(timing.catchup_window)}",
        )
    if timing.jitter is not None:
        if not isinstance(timing.jitter, timedelta):
            add("jitter", "jitter must be a duration")
        elif timing.jitter < timedelta(0):
            add("jitter", f"jitter must not be negative, got {_duration(timing.jitter)}")

    if not problems:
        problems.extend(_never_fires(timing, now=now, prefix=prefix))
    return problems


def _never_fires(timing: ScheduleTiming, *, now: datetime | None, prefix: str) -> list[Problem]:
    """A problem if a valid timing has no fire time between its start and its end."""
    start, end = timing.start_time, timing.end_time
    trigger = timing.trigger
    if isinstance(trigger, OnceTrigger):
        if start is not None and trigger.at < start:
            return [
                Problem(
                    f"{prefix}.once.at",
                    f"{_iso(trigger.at)} is before start_time {_iso(start)}: it would never fire",
                )
            ]
        if end is not None and trigger.at > end:
            return [
                Problem(
                    f"{prefix}.once.at",
                    f"{_iso(trigger.at)} is after end_time {_iso(end)}: it would never fire",
                )
            ]
        return []
    if end is None:
        return []
    if start is not None and (now is None or start > now):
        base, after = start, start - timedelta(microseconds=1)  # start_time is inclusive
    elif now is not None:
        base = after = now  # a new schedule fires strictly after its creation
    else:
        return []
    unbounded = replace(timing, end_time=None)
    first = next_fire_after(unbounded, after, anchor=now or start)
    if first is None or first <= end:
        return []
    return [
        Problem(
            f"{prefix}.end_time",
            f"the schedule would never fire: its first fire time from {_iso(base)} on is "
            f"{_iso(first)}, after end_time {_iso(end)}",
        )
    ]


def _is_aware(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    return f"{seconds:g}s"
