"""Cron expressions: validation, matching through croniter, and fire instants in a zone.

Syntax
------
raypipe uses standard 5-field cron: ``minute hour day-of-month month day-of-week``.

* Each field is ``*``, a number, a name (``JAN``-``DEC`` in month, ``SUN``-``SAT`` in
  day-of-week, any case), a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to
  the field's maximum), or a comma-separated list of these. Ranges do not wrap around
  (``FRI-MON`` is refused: write ``FRI-SAT,SUN-MON``).
* Day-of-week: 0-7, where both 0 and 7 are Sunday (as in Vixie cron and cronie).
  ``d#n`` is the n-th weekday ``d`` of the month (``1#2``: the second Monday, n in 1-5);
  ``dL`` is the last weekday ``d`` of the month (``5L``: the last Friday).
* Day-of-month: ``L`` is the last day of the month (28, 29, 30 or 31).
* When both day-of-month and day-of-week are restricted (anything other than a bare
  ``*``), a day matches if EITHER matches (POSIX and Vixie cron: ``0 0 1,15 * MON`` fires on
  the 1st, the 15th and every Monday; ``d#n`` and ``dL`` join that OR like any weekday).
  Vixie cron's quirk of treating a field that merely starts with ``*`` (``*/2``) as
  unrestricted is not reproduced.
* Aliases: ``@yearly`` (= ``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (= ``@midnight``), ``@hourly``.

Who decides what
----------------
croniter decides which wall-clock minutes match; raypipe's gate decides what is accepted,
and raypipe's DST policy decides which instants those wall-clock minutes become.

1. The gate (:mod:`control_plane.schedules.timing._cron_syntax`) refuses, each with a message
   that names the field: a 6- or 7-field expression (croniter would read a 6th field as
   seconds, Quartz reads the first as seconds: the same text means different schedules in
   different tools), ``@reboot``, out-of-range values, backwards ranges, a step of 0, a step
   wider than the field (``*/90`` in minutes fires only at minute 0, not every 90
   minutes), the non-standard ``?``, ``W``, ``H`` and ``R``, and croniter's ``L5`` spelling
   of ``5L``. croniter on its own accepts most of these and reads several of them
   differently from other crons (equal ranges such as ``1-1`` become the whole cycle,
   6 fields become seconds), and its errors do not name the field.
2. What passes is handed to croniter in a canonical spelling that it reads exactly as
   standard cron: every field as an explicit sorted list of numbers (no ranges, steps,
   names or 7 for Sunday, so none of croniter's range quirks can arise), ``L`` and
   ``L5`` (croniter's spelling of ``5L``) and ``d#n`` as they are, ``day_or=True``. croniter
   expands the minute, hour and month fields (:attr:`CronExpression.minutes`, ...) and
   enumerates the matching days of each month with ``get_next`` over naive wall-clock
   datetimes. croniter cannot read every valid day combination as one expression: it
   refuses literal weekdays mixed with ``d#n``/``dL`` in one field, and it intersects
   ``d#n`` with day-of-month instead of joining the OR. So the day fields go to croniter
   as up to three expressions, each restricting one side only (day-of-month; plain
   weekdays; ``d#n`` and ``dL``), and a day matches if any of them matches: the POSIX OR.
   (With neither side restricted there is one expression, ``0 0 * months *``.)
3. A cron that can never fire (``0 0 30 2 *``) is refused by the gate after croniter
   found no matching day in 2001-2028: within 1901-2099 the calendar repeats every 28
   years, so every combination of weekday, month length and leap year occurs there.

Cost: croniter's ``get_next`` takes about 30 microseconds, too slow to call per fire for
thousands of schedules, so the days croniter finds for each day expression and month are
cached (``_part_days``, shared by every schedule whose day fields read the same, such as
all ``* * *``), parsed expressions are cached by :func:`parse_cron`, and the fire-time
iterator below walks a day's matching minutes without calling croniter again.

Fire instants and daylight saving time
--------------------------------------
Fire times are computed in the schedule's IANA zone (zoneinfo) as wall-clock times, then
converted to UTC:

* A wall-clock time that does not exist on a spring-forward day fires once, shifted
  forward by the gap: 02:30 on a day that jumps from 02:00 to 03:00 fires at 03:30.
* A wall-clock time that happens twice on a fall-back day fires once, at its first
  occurrence.
* Except: a cron whose hour field selects every hour (``*``, ``*/1``, ``0-23``; e.g.
  ``*/15 * * * *`` or ``30 * * * *``) fires at every matching instant of real time, so no
  real hour is skipped or doubled. In a fall-back repeated hour it fires in both real
  hours (they are different instants); in a spring-forward gap the missing wall times
  simply do not exist (02:30 does not fire, 03:30 fires once).
* Never two fires for the same instant. With a one-hour gap from 02:00 to 03:00,
  ``0,30 2 * * *`` fires at 03:00 and 03:30; ``0 2,3 * * *`` fires once, at 03:00.

So a daily cron fires exactly once every day, also on days whose midnight does not exist
(America/Santiago jumps from 00:00 to 01:00: ``0 0 * * *`` fires at 01:00 that day) and
in zones that shift by 30 minutes (Australia/Lord_Howe).

Implementation: candidate wall-clock times are enumerated as naive datetimes, day by day
(the days croniter matched, each with the minutes and hours croniter expanded). On a day
with one UTC offset throughout (nearly every day) a wall time maps to UTC by
subtracting that offset. On a day with a transition each wall time is classified through
zoneinfo (PEP 495): it is in a gap when its ``fold=0`` offset is smaller than its
``fold=1`` offset, repeated when larger. ``fold=0`` is exactly the policy above: for a gap
it applies the offset from before the transition (which shifts forward by the gap), for a
repeated time it is the first occurrence. Shifted times can overtake later wall times
(02:30 -> 03:30 comes after 03:00), so around transitions instants pass through a small
heap and leave it only once no later wall time can produce an earlier instant.

A day counts as having one offset when the offsets at its midnight and at the next
midnight agree (both folds). That assumes no zone changes its offset and back within one
day: a scan of every zone in tzdata 2026.6 (offsets every 3 hours, 1970-2060) found no
two transitions less than 50 hours apart.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cached_property, lru_cache

from croniter import CroniterBadDateError, croniter

from control_plane.schedules.timing._cron_syntax import (
    ALIASES,
    DOM,
    DOW,
    HOUR,
    MAX_LENGTH,
    MINUTE,
    MONTH,
    CronError,
    Field,
    never_fires_problem,
    parse_fields,
)

__all__ = [
    "ALIASES",
    "MAX_LENGTH",
    "CronError",
    "CronExpression",
    "cron_instants",
    "parse_cron",
]

# Searching 2001-2028 covers every calendar of 1901-2099 (see the module docstring).
_PROBE_FROM = datetime(2001, 1, 1)
_PROBE_UNTIL = datetime(2029, 1, 1)
# A parsed cron whose day pattern matched nothing in this many months never fires; with
# 2001-2028 already probed at parse time this only guards against endless loops.
_MAX_EMPTY_MONTHS = 12 * 401
_LAST_YEAR = 9998  # leave room for arithmetic below datetime.max
_MINUTE_STEP = timedelta(minutes=1)


@dataclass(frozen=True, eq=False)
class CronExpression:
    """A parsed, valid cron expression. Build it with :func:`parse_cron`.

    Values are cron's: months 1-12, weekdays 0-6 with 0 = Sunday (a 7 in the text is
    stored as 0).

    Attributes:
        expression: The expression as written.
        minutes: The matching minutes, as croniter expanded them.
        hours: The matching hours, as croniter expanded them.
        months: The matching months, as croniter expanded them.
        weekdays: The plain weekdays of the day-of-week field (without ``d#n``/``dL``).
        day_parts: The croniter expressions (``0 0 dom month dow``, canonical) whose
            matching days, together, are the days this cron fires on.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_parts: tuple[str, ...]

    @property
    def every_hour(self) -> bool:
        """Whether the hour field selects all 24 hours: such a cron fires at every matching
        instant of real time across DST changes instead of following wall-clock rules."""
        return len(self.hours) == 24

    @cached_property
    def _times(self) -> tuple[timedelta, ...]:
        # Offsets from midnight of every matching wall time of a day, ascending.
        return tuple(timedelta(hours=h, minutes=m) for h in self.hours for m in self.minutes)

    @cached_property
    def _month_cache(self) -> dict[tuple[int, int], tuple[int, ...]]:
        return {}

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` (a calendar date) is one on which this cron fires."""
        return day.month in self.months and day.day in self.month_days(day.year, day.month)

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock time ``wall`` (its zone is ignored) matches the cron."""
        return (
            wall.second == 0
            and wall.microsecond == 0
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and self.matches_day(wall.date())
        )

    def month_days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of ``year``-``month`` that croniter matches with the day fields."""
        cache = self._month_cache
        days = cache.get((year, month))
        if days is None:
            if len(cache) >= 64:  # iteration is sequential, so a small cache suffices
                cache.clear()
            found: set[int] = set()
            for part in self.day_parts:
                found.update(_part_days(part, year, month))
            days = cache[(year, month)] = tuple(sorted(found))
        return days

    def matching_days(self, start: date) -> Iterator[date]:
        """The days on or after ``start`` on which the cron fires, ascending."""
        year, month, first = start.year, start.month, start.day
        empty = 0
        while year <= _LAST_YEAR and empty < _MAX_EMPTY_MONTHS:
            if month in self.months:
                days = self.month_days(year, month)
                for day in days[bisect_right(days, first - 1) :]:
                    empty = 0
                    yield date(year, month, day)
            empty += 1
            first = 1
            month += 1
            if month == 13:
                month, year = 1, year + 1


# -- parsing -----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse_cron(expression: str) -> CronExpression:
    """Validate a 5-field cron expression or an alias, and read it through croniter.

    Args:
        expression: Such as ``"*/15 9-17 * * MON-FRI"`` or ``"@daily"``.

    Returns:
        The parsed expression.

    Raises:
        CronError: With every problem found, each naming its field.
    """
    fields, parsed = parse_fields(expression)
    minutes, hours, months = _expand_times(parsed)
    day_parts = _day_parts(fields, parsed)
    if not any(_fires_in_probe_years(part) for part in day_parts):
        raise CronError(expression, [never_fires_problem(fields, months)])
    return CronExpression(
        expression=expression,
        minutes=minutes,
        hours=hours,
        months=months,
        weekdays=frozenset(v % 7 for v in parsed[DOW].values),
        day_parts=day_parts,
    )


def _listed(values: set[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _expand_times(parsed: list[Field]) -> tuple[tuple[int, ...], tuple[int, ...], frozenset[int]]:
    """Minutes, hours and months as croniter expands the canonical fields."""
    canonical = f"{_listed(parsed[MINUTE].values)} {_listed(parsed[HOUR].values)} * "
    canonical += f"{_listed(parsed[MONTH].values)} *"
    expanded, _ = croniter.expand(canonical)

    def values(index: int, low: int, high: int) -> tuple[int, ...]:
        found = expanded[index]
        if found == ["*"]:
            return tuple(range(low, high + 1))
        return tuple(sorted(int(v) for v in found))

    return values(MINUTE, 0, 59), values(HOUR, 0, 23), frozenset(values(MONTH, 1, 12))


def _day_parts(fields: list[str], parsed: list[Field]) -> tuple[str, ...]:
    """croniter expressions, each restricting one day field, whose days together are the
    cron's days (see the module docstring for why there can be more than one)."""
    months = _listed(parsed[MONTH].values)
    dom, dow = parsed[DOM], parsed[DOW]
    days: list[str] = []  # the day-of-month field, and the day-of-week field in one or two
    weekdays: list[str] = []
    if fields[DOM] != "*":
        days.append(",".join(([_listed(dom.values)] if dom.values else []) + ["L"] * dom.last))
    if fields[DOW] != "*":
        plain = {v % 7 for v in dow.values}
        special = [f"{d % 7}#{n}" for d, n in sorted(dow.nth)]
        special += [f"L{d % 7}" for d in sorted(dow.last_weekdays)]
        weekdays += [text for text in (_listed(plain), ",".join(special)) if text]
    parts = [f"0 0 {d} {months} *" for d in days] + [f"0 0 * {months} {w}" for w in weekdays]
    return tuple(parts) or (f"0 0 * {months} *",)


def _fires_in_probe_years(part: str) -> bool:
    try:
        found = croniter(
            part, _PROBE_FROM - _MINUTE_STEP, day_or=True, max_years_between_matches=28
        ).get_next(datetime)
    except CroniterBadDateError:
        return False
    return bool(found < _PROBE_UNTIL)


@lru_cache(maxsize=8192)
def _part_days(part: str, year: int, month: int) -> tuple[int, ...]:
    """The days of ``year``-``month`` that the croniter expression ``part`` matches."""
    if year < 2 or year > _LAST_YEAR:
        return ()
    days = []
    matcher = croniter(
        part, datetime(year, month, 1) - _MINUTE_STEP, day_or=True, max_years_between_matches=1
    )
    while True:
        try:
            found: datetime = matcher.get_next(datetime)
        except CroniterBadDateError:
            break
        if (found.year, found.month) != (year, month):
            break
        days.append(found.day)
    return tuple(days)


# -- fire instants -----------------------------------------------------------------------------


def cron_instants(cron: CronExpression, zone: tzinfo, after: datetime) -> Iterator[datetime]:
    """The instants at which ``cron`` fires in ``zone``, strictly after ``after``.

    Follows the DST policy of this module's docstring. Stops after year 9998.

    Args:
        cron: A parsed expression.
        zone: The schedule's zone (a ``zoneinfo.ZoneInfo``, or any PEP 495 tzinfo).
        after: An aware datetime.

    Yields:
        Aware UTC datetimes, strictly increasing.
    """
    if after.tzinfo is None:
        raise ValueError(f"after must be timezone-aware, got {after!r}")
    last = after.astimezone(UTC)
    offsets = _DayOffsets(zone)
    first_day = last.astimezone(zone).date()
    # A transition shortly before `after` can move earlier wall times past it (shifted
    # gap times, the second pass of a repeated hour), so around transitions start two
    # days back; offsets change by less than 48 hours, so nothing older can matter.
    if offsets.single(first_day - timedelta(days=1)) is None or offsets.single(first_day) is None:
        first_day -= timedelta(days=2)
    times = cron._times
    every_hour = cron.every_hour
    pending: list[datetime] = []  # instants that a later wall time might still undercut
    for day in cron.matching_days(first_day):
        midnight = datetime(day.year, day.month, day.day)
        offset = offsets.single(day)
        if offset is not None and not pending:
            # One offset all day: wall times map to UTC in order.
            base = (midnight - offset).replace(tzinfo=UTC)
            for index in range(bisect_right(times, last - base), len(times)):
                last = base + times[index]
                yield last
            continue
        for delta in times:
            wall = midnight + delta
            off0 = zone.utcoffset(wall)
            off1 = zone.utcoffset(wall.replace(fold=1))
            assert off0 is not None
            assert off1 is not None
            # Every instant produced from this wall time or a later one is at or after
            # the first instant whose wall clock reads `wall` or later: `floor`.
            floor = (wall - max(off0, off1)).replace(tzinfo=UTC)
            while pending and pending[0] <= floor:
                instant = heapq.heappop(pending)
                if instant > last:
                    last = instant
                    yield instant
            if off0 == off1 or not every_hour:
                # Unambiguous; or wall-clock policy: fold=0 is the shifted time in a gap
                # and the first occurrence of a repeated time.
                heapq.heappush(pending, (wall - off0).replace(tzinfo=UTC))
            elif off0 > off1:
                # Repeated wall time of an every-hour cron: both real instants fire.
                heapq.heappush(pending, (wall - off0).replace(tzinfo=UTC))
                heapq.heappush(pending, (wall - off1).replace(tzinfo=UTC))
            # else: a nonexistent wall time of an every-hour cron does not fire.
    while pending:
        instant = heapq.heappop(pending)
        if instant > last:
            last = instant
            yield instant


class _DayOffsets:
    """UTC offsets at local midnights of one zone, computed once per day."""

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._midnights: dict[date, tuple[timedelta | None, timedelta | None]] = {}

    def _at_midnight(self, day: date) -> tuple[timedelta | None, timedelta | None]:
        found = self._midnights.get(day)
        if found is None:
            if len(self._midnights) > 8:
                self._midnights.clear()
            midnight = datetime(day.year, day.month, day.day)
            found = self._midnights[day] = (
                self._zone.utcoffset(midnight),
                self._zone.utcoffset(midnight.replace(fold=1)),
            )
        return found

    def single(self, day: date) -> timedelta | None:
        """The offset in force all through ``day``, or None if it changes that day."""
        start0, start1 = self._at_midnight(day)
        if day >= date(_LAST_YEAR, 12, 31):
            return start0 if start0 == start1 else None
        end0, end1 = self._at_midnight(day + timedelta(days=1))
        if start0 == start1 == end0 == end1:
            return start0
        return None
