"""When a schedule fires: next fire, fires in a range, catch-up after downtime, jitter.

Pure functions over explicit times: none of them reads a clock, so tests walk years of
fires in milliseconds and the firing loop decides with the time its
:class:`~control_plane.schedules.timing.clock.Clock` gives it.

Terms:

* A *nominal* fire time is one the trigger names (for cron, after the DST policy of
  :mod:`control_plane.schedules.timing.cron`). Runs carry it as ``scheduled_time``; catch-up
  and backfill count in nominal times.
* A fire is *due* at its nominal time plus its jitter offset. Jitter offsets are cut
  short of the next nominal time, so due times increase with nominal times.
* Bounds: ``start_time`` and ``end_time`` are inclusive (a fire exactly at either one
  happens). ``max_runs`` (0 = no limit) counts runs started, which the caller tracks.
* Intervals: nominal times are ``anchor + k * every`` for whole k, where the anchor is
  ``start_time`` or, without one, the schedule's creation time, which callers pass as
  ``anchor``. A schedule whose ``start_time`` lies ahead fires at ``start_time`` itself.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from control_plane.schedules.timing.cron import cron_instants, parse_cron
from control_plane.schedules.timing.triggers import (
    CatchupPolicy,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    ScheduleTiming,
)

__all__ = [
    "DEFAULT_BACKFILL_LIMIT",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_CATCHUP",
    "CatchupDecision",
    "FireList",
    "due_fires",
    "fires_between",
    "iter_fires",
    "jitter_offset",
    "jittered",
    "next_fire_after",
]

_TICK = timedelta(microseconds=1)  # datetime resolution: "strictly after t" = "at or after t+1µs"

#: How late a fire may start and still count as on time under CATCHUP_POLICY_NONE. It
#: covers a slow loop or a quick restart; a fire missed by more is skipped.
DEFAULT_GRACE = timedelta(minutes=1)
#: The most runs one catch-up (CATCHUP_POLICY_ALL) starts; older missed fires are skipped.
DEFAULT_MAX_CATCHUP = 100
#: The most fire times :func:`fires_between` returns by default.
DEFAULT_BACKFILL_LIMIT = 1000


@dataclass(frozen=True)
class FireList:
    """Nominal fire times of a range, ascending.

    Attributes:
        fires: At most ``limit`` fire times.
        truncated: Whether the range holds more fire times after the last one returned.
    """

    fires: tuple[datetime, ...]
    truncated: bool


@dataclass(frozen=True)
class CatchupDecision:
    """What the firing loop does at ``now``.

    Attributes:
        fires: Nominal times to start a run for now, ascending.
        skipped: Due fires that will never run (missed beyond the policy, the window, the
            cap or ``max_runs``). The loop records them as handled.
        capped: Whether CATCHUP_POLICY_ALL hit ``max_catchup`` and dropped older fires.
        next_fire: The next nominal time that is not due yet, or None if the schedule is
            done (past ``end_time``, ``max_runs`` reached, a once trigger that fired).
        next_due: When ``next_fire`` becomes due (its nominal time plus jitter): the loop
            sleeps until then.
    """

    fires: tuple[datetime, ...]
    skipped: int
    capped: bool
    next_fire: datetime | None
    next_due: datetime | None


def iter_fires(
    timing: ScheduleTiming,
    after: datetime,
    *,
    anchor: datetime | None = None,
    bounded: bool = True,
) -> Iterator[datetime]:
    """Nominal fire times strictly after ``after``, ascending, as aware UTC datetimes.

    Ignores ``max_runs``, which depends on runs the caller counts.

    Args:
        timing: A valid timing (see :func:`~control_plane.schedules.timing.triggers.validate`).
        after: An aware datetime.
        anchor: The schedule's creation time; needed by an interval trigger without
            ``start_time``.
        bounded: Whether ``start_time`` and ``end_time`` clip the fire times.

    Raises:
        ValueError: If ``after`` is naive, or an interval trigger has no anchor.
    """
    _check_aware("after", after)
    after = after.astimezone(UTC)
    start, end = (timing.start_time, timing.end_time) if bounded else (None, None)
    if start is not None and start > after:
        after = start.astimezone(UTC) - _TICK
    fires = _trigger_fires(timing, after, anchor)
    for fire in fires:
        if end is not None and fire > end:
            return
        yield fire


def _trigger_fires(
    timing: ScheduleTiming, after: datetime, anchor: datetime | None
) -> Iterator[datetime]:
    trigger = timing.trigger
    if isinstance(trigger, CronTrigger):
        return cron_instants(parse_cron(trigger.expression), timing.zone, after)
    if isinstance(trigger, IntervalTrigger):
        origin = timing.start_time if timing.start_time is not None else anchor
        if origin is None:
            raise ValueError(
                "an interval trigger without start_time needs anchor (the schedule's creation time)"
            )
        _check_aware("anchor", origin)
        return _interval_fires(origin.astimezone(UTC), trigger.every, after)
    if isinstance(trigger, OnceTrigger):
        at = trigger.at.astimezone(UTC)
        return iter([at] if at > after else [])
    raise TypeError(f"unknown trigger {trigger!r}")


def _interval_fires(origin: datetime, every: timedelta, after: datetime) -> Iterator[datetime]:
    if every <= timedelta(0):
        raise ValueError(f"interval must be positive, got {every}")
    # timedelta arithmetic is exact (integer microseconds), so fires never drift.
    k = (after - origin) // every + 1
    fire = origin + k * every
    while True:
        yield fire
        try:
            fire += every
        except OverflowError:
            return


def next_fire_after(
    timing: ScheduleTiming,
    after: datetime,
    *,
    anchor: datetime | None = None,
    runs_started: int = 0,
) -> datetime | None:
    """The first nominal fire time strictly after ``after``.

    Args:
        timing: A valid timing.
        after: An aware datetime, such as the last nominal fire time or now.
        anchor: The schedule's creation time (for an interval trigger without start_time).
        runs_started: Runs the schedule has started, for ``max_runs``.

    Returns:
        An aware UTC datetime at or after ``start_time`` and at or before ``end_time``, or
        None if there is none or ``max_runs`` is reached.
    """
    if timing.max_runs and runs_started >= timing.max_runs:
        return None
    return next(iter_fires(timing, after, anchor=anchor), None)


def fires_between(
    timing: ScheduleTiming,
    start: datetime,
    end: datetime,
    *,
    anchor: datetime | None = None,
    limit: int = DEFAULT_BACKFILL_LIMIT,
    bounded: bool = True,
) -> FireList:
    """Nominal fire times in ``(start, end]``, for backfill. Ignores ``max_runs``.

    Args:
        timing: A valid timing.
        start: Exclusive lower end of the range (aware).
        end: Inclusive upper end of the range (aware).
        anchor: The schedule's creation time (for an interval trigger without start_time).
        limit: The most fire times to return (at least 1).
        bounded: Whether the schedule's ``start_time`` and ``end_time`` clip the range.

    Returns:
        The fire times, and whether more remain in the range after the last one
        (to continue, call again with ``start`` set to that last one).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    _check_aware("end", end)
    fires: list[datetime] = []
    for fire in iter_fires(timing, start, anchor=anchor, bounded=bounded):
        if fire > end:
            break
        if len(fires) == limit:
            return FireList(tuple(fires), truncated=True)
        fires.append(fire)
    return FireList(tuple(fires), truncated=False)


def due_fires(
    timing: ScheduleTiming,
    last_fire: datetime | None,
    now: datetime,
    *,
    anchor: datetime | None = None,
    runs_started: int = 0,
    grace: timedelta = DEFAULT_GRACE,
    max_catchup: int = DEFAULT_MAX_CATCHUP,
) -> CatchupDecision:
    """Which fires to start at ``now``, after ``last_fire`` was handled.

    The due fires are the nominal times in ``(last_fire, now]`` whose due time (nominal
    plus jitter) has come. Normally that is one fire, on time; after downtime there are
    more, and the catch-up policy picks:

    * NONE: the latest due fire if it became due at most ``grace`` ago; all others are
      skipped. A short stall of the loop does not lose a fire; downtime does.
    * LATEST: the latest due fire, however late (the API's "one run for the latest missed
      fire"); all older ones are skipped. ``catchup_window`` does not apply.
    * ALL: every due fire whose nominal time is within ``catchup_window`` of ``now``, at
      most ``max_catchup`` of them (the most recent; ``capped`` says when older ones were
      dropped); older ones are skipped.

    Then ``max_runs`` keeps the earliest of the picked fires that it still allows.

    Args:
        timing: A valid timing.
        last_fire: The instant up to which fires are handled: the nominal time of the
            last fire run or skipped or, after a resume, the resume time (so fires missed
            while paused are not run). None before the first fire: ``anchor`` is then
            the start.
        now: The current time (aware).
        anchor: The schedule's creation time: the start when ``last_fire`` is None, and
            the anchor of an interval trigger without ``start_time``.
        runs_started: Runs the schedule has started, for ``max_runs``.
        grace: How late a fire may start under NONE.
        max_catchup: The most fires one catch-up under ALL starts.

    Returns:
        The decision; record ``fires`` and ``skipped`` as handled, then sleep until
        ``next_due``.
    """
    _check_aware("now", now)
    if max_catchup < 1:
        raise ValueError(f"max_catchup must be at least 1, got {max_catchup}")
    since = last_fire if last_fire is not None else anchor
    if since is None:
        raise ValueError("due_fires needs last_fire or anchor (the creation or resume time)")
    now = now.astimezone(UTC)
    remaining = timing.max_runs - runs_started if timing.max_runs else None

    policy = timing.catchup_policy
    window_start = now - timing.catchup_window
    # Only the most recent due fires can be picked: walk the range once, counting, and
    # keep that tail (plus one, which may turn out not to be due yet because of jitter).
    keep = max_catchup if policy is CatchupPolicy.ALL else 1
    tail: deque[datetime] = deque(maxlen=keep + 1)
    count = in_window = 0
    upcoming: datetime | None = None
    for fire in iter_fires(timing, since, anchor=anchor):
        if fire > now:
            upcoming = fire
            break
        tail.append(fire)
        count += 1
        in_window += fire >= window_start
    if tail and _due(timing, tail[-1], upcoming) > now:
        # Its nominal time has passed but its jittered start has not: not due yet.
        upcoming = tail.pop()
        count -= 1
        in_window -= upcoming >= window_start
    elif len(tail) > keep:
        tail.popleft()

    picked: list[datetime] = []
    capped = False
    if tail:
        latest = tail[-1]
        if policy is CatchupPolicy.NONE:
            # `upcoming` follows `latest` in the sequence, so it bounds latest's jitter.
            if now - _due(timing, latest, upcoming) <= grace:
                picked = [latest]
        elif policy is CatchupPolicy.LATEST:
            picked = [latest]
        else:
            picked = [fire for fire in tail if fire >= window_start]
            capped = in_window > len(picked)
    if remaining is not None:
        picked = picked[: max(remaining, 0)]
        remaining -= len(picked)

    next_fire = upcoming if remaining is None or remaining > 0 else None
    next_due = None
    if next_fire is not None:
        next_due = _due(timing, next_fire, _following(timing, next_fire, anchor))
    return CatchupDecision(
        fires=tuple(picked),
        skipped=count - len(picked),
        capped=capped,
        next_fire=next_fire,
        next_due=next_due,
    )


def _due(timing: ScheduleTiming, nominal: datetime, next_nominal: datetime | None) -> datetime:
    if not timing.jitter:
        return nominal
    return nominal + jitter_offset(timing.schedule_id, nominal, timing.jitter, next_nominal)


def _following(
    timing: ScheduleTiming, nominal: datetime, anchor: datetime | None
) -> datetime | None:
    if not timing.jitter:
        return None  # only jitter needs the next nominal time
    return next(iter_fires(timing, nominal, anchor=anchor), None)


def jitter_offset(
    schedule_id: str, nominal: datetime, jitter: timedelta, next_nominal: datetime | None
) -> timedelta:
    """The deterministic delay of one fire: the same schedule and nominal time always get
    the same offset, on every replica and after every restart.

    A SHA-256 hash of the schedule id and the nominal time (as a UTC ISO 8601 string)
    gives a fraction in [0, 1) of the bound, rounded down to a microsecond. The bound is
    ``jitter`` or, if smaller, the gap to the next nominal time, so the offset is always
    strictly less than both: a jittered fire always starts before the next nominal time.

    Args:
        schedule_id: The schedule's name.
        nominal: The nominal fire time (aware).
        jitter: The schedule's jitter; zero or negative gives no offset.
        next_nominal: The next nominal fire time, or None if there is none.

    Returns:
        An offset ``0 <= offset < min(jitter, next_nominal - nominal)``.
    """
    _check_aware("nominal", nominal)
    bound = jitter
    if next_nominal is not None:
        bound = min(bound, next_nominal - nominal)
    bound_us = bound // _TICK
    if bound_us <= 0:
        return timedelta(0)
    stamp = nominal.astimezone(UTC).isoformat()
    digest = hashlib.sha256(f"{schedule_id}\x00{stamp}".encode()).digest()
    # 64 hash bits -> [0, 1); multiplying integers keeps the result exact and below bound.
    fraction_bits = int.from_bytes(digest[:8], "big")
    return timedelta(microseconds=(bound_us * fraction_bits) >> 64)


def jittered(
    timing: ScheduleTiming, nominal: datetime, *, anchor: datetime | None = None
) -> datetime:
    """When the fire at ``nominal`` is due: ``nominal`` plus its jitter offset.

    Args:
        timing: A valid timing.
        nominal: One of its nominal fire times.
        anchor: The schedule's creation time (for an interval trigger without start_time).
    """
    return _due(timing, nominal, _following(timing, nominal, anchor))


def _check_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
