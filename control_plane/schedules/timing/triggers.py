"""Schedule triggers and timing options (their validation is :mod:`.checks`).

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
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "MIN_INTERVAL",
    "CatchupPolicy",
    "CronTrigger",
    "IntervalTrigger",
    "OnceTrigger",
    "ScheduleTiming",
    "Trigger",
    "load_zone",
    "zone_problem",
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


def load_zone(name: str) -> ZoneInfo:
    """The zone called ``name`` (an IANA name; empty means UTC).

    Raises:
        ValueError: If there is no such zone, with a suggestion when a name is close.
    """
    problem = zone_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return ZoneInfo(name or "UTC")


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not a time zone a schedule may use (with a suggestion), or None."""
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
