"""Schedule triggers and timing options, and their validation.

The types map 1:1 onto the proto's ``Schedule`` fields: ``oneof trigger {CronTrigger cron;
IntervalTrigger interval; OnceTrigger once}``, ``time_zone``, ``start_time``, ``end_time``,
``max_runs``, ``catchup_policy``, ``catchup_window``, ``jitter``. Proto defaults map as
follows: an empty ``time_zone`` is UTC, ``max_runs`` 0 is no limit,
``CATCHUP_POLICY_UNSPECIFIED`` is :attr:`CatchupPolicy.LATEST`, an unset
``catchup_window`` is one hour, an unset or zero ``jitter`` is none.

Decisions:

* ``start_time`` and ``end_time`` are both inclusive: a fire whose nominal time equals
  either one happens. Jitter may start a run up to the jitter after ``end_time``.
* ``end_time`` must be after ``start_time``. At creation (``now`` given) a schedule that
  could never fire is refused: a once trigger at or before ``now``, an ``end_time`` at or
  before ``now``, or no fire time between ``start_time`` (or ``now``) and ``end_time``.
* Intervals are at least one second. Jitter must not be negative; a jitter wider than the
  spacing of fire times is allowed, because each offset is cut short of the next nominal
  fire time (see :func:`~control_plane.schedules.timing.firetimes.jitter_offset`).
* ``catchup_window`` must be positive; ``max_runs`` must not be negative.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import KW_ONLY, dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from control_plane.schedules.timing.cron import CronError, parse_cron

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "MIN_INTERVAL",
    "CatchupPolicy",
    "CronTrigger",
    "IntervalTrigger",
    "OnceTrigger",
    "Problem",
    "ScheduleTiming",
    "Trigger",
    "load_zone",
    "validate",
]

#: How far back CATCHUP_POLICY_ALL catches up when a schedule does not say.
DEFAULT_CATCHUP_WINDOW = timedelta(hours=1)
#: The shortest interval trigger.
MIN_INTERVAL = timedelta(seconds=1)
# Names that exist on a server but depend on its configuration rather than naming a zone.
_HOST_ZONES = frozenset({"localtime", "posixrules"})


@dataclass(frozen=True)
class CronTrigger:
    """Fires on a 5-field cron expression (see :mod:`control_plane.schedules.timing.cron`)."""

    expression: str


@dataclass(frozen=True)
class IntervalTrigger:
    """Fires every ``every`` of elapsed time, anchored at ``start_time`` (or, without
    one, at the schedule's creation time). Time zones and DST do not affect it."""

    every: timedelta


@dataclass(frozen=True)
class OnceTrigger:
    """Fires once, at ``at`` (timezone-aware)."""

    at: datetime


Trigger: TypeAlias = CronTrigger | IntervalTrigger | OnceTrigger


class CatchupPolicy(enum.Enum):
    """What a schedule does about fire times missed while the scheduler was down.

    The values are the proto enum's names without the ``CATCHUP_POLICY_`` prefix.
    """

    #: Skip missed fires; only a fire that is due now (within a grace period) runs.
    NONE = "NONE"
    #: One run, for the latest missed fire. The default.
    LATEST = "LATEST"
    #: One run per missed fire within ``catchup_window``, capped (never a storm).
    ALL = "ALL"


@dataclass(frozen=True)
class ScheduleTiming:
    """When a schedule fires: its trigger and the options that shape its fire times.

    Attributes:
        trigger: Cron, interval or once.
        time_zone: IANA zone name for cron triggers (``Europe/Berlin``); empty means UTC.
        start_time: No fire before this instant (inclusive); anchors interval triggers.
        end_time: No fire after this instant (inclusive).
        max_runs: The schedule stops after starting this many runs; 0 means no limit.
        catchup_policy: What to do about fires missed during downtime.
        catchup_window: How far back CATCHUP_POLICY_ALL catches up.
        jitter: Upper bound of a deterministic delay added to each fire; None for none.
        schedule_id: The schedule's name; seeds the jitter so each schedule has its own.
    """

    trigger: Trigger
    _: KW_ONLY
    time_zone: str = "UTC"
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_runs: int = 0
    catchup_policy: CatchupPolicy = CatchupPolicy.LATEST
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    jitter: timedelta | None = None
    schedule_id: str = ""

    @property
    def zone(self) -> ZoneInfo:
        """The time zone. Raises ValueError for an unknown name (see :func:`validate`)."""
        return load_zone(self.time_zone)


@dataclass(frozen=True)
class Problem:
    """One problem with one field, such as ``schedule.cron.expression``; maps 1:1 onto a
    ``google.rpc.BadRequest.FieldViolation``."""

    field: str
    description: str


def load_zone(name: str) -> ZoneInfo:
    """The zone called ``name`` (an IANA name; empty means UTC).

    Raises:
        ValueError: If there is no such zone, with a suggestion when a name is close.
    """
    problem = _zone_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return ZoneInfo(name or "UTC")


def _zone_problem(name: str) -> str | None:
    if not isinstance(name, str):
        return f"time_zone must be a string, got {type(name).__name__}"
    if not name:
        return None
    if name in _HOST_ZONES:
        return (
            f"{name!r} depends on the server's configuration; name an IANA time zone such "
            "as 'Europe/Berlin' or 'UTC'"
        )
    if name in _known_zones():
        try:
            ZoneInfo(name)
            return None
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    message = f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
    suggestion = _closest_zone(name)
    if suggestion is not None:
        message += f" (did you mean {suggestion!r}?)"
    return message


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _closest_zone(name: str) -> str | None:
    by_lower = {zone.lower(): zone for zone in _known_zones() - _HOST_ZONES}
    exact = by_lower.get(name.strip().lower())
    if exact is not None:
        return exact
    close = difflib.get_close_matches(name.strip().lower(), by_lower, n=1, cutoff=0.75)
    return by_lower[close[0]] if close else None


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

    zone_problem = _zone_problem(timing.time_zone)
    if zone_problem is not None:
        add("time_zone", zone_problem)

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
    # Imported here because firetimes builds on the types of this module.
    from control_plane.schedules.timing.firetimes import next_fire_after

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
