"""Cron expressions: parsing, validation, and fire instants in a time zone.

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
  the 1st, the 15th and every Monday). Vixie cron's quirk of treating a field that merely
  starts with ``*`` (``*/2``) as unrestricted is not reproduced; croniter does not
  reproduce it either (its ``implement_cron_bug`` defaults to off).
* Aliases: ``@yearly`` (= ``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (= ``@midnight``), ``@hourly``.

Refused, each with a message that names the field: a 6- or 7-field expression (croniter
would read a 6th field as seconds, Quartz reads the first as seconds: the same text means
different schedules in different tools), ``@reboot``, out-of-range values, backwards
ranges, a step of 0, a step wider than the field (``*/90`` in minutes fires only at minute
0, not every 90 minutes), the non-standard ``?``, ``W`` and ``H``, and an expression that
can never fire (``0 0 30 2 *``). Never-firing is decided by searching for a matching day
in 2001-2028: within 1901-2099 the calendar repeats every 28 years, so every combination
of weekday, month length and leap year occurs in that window.

The grammar is parsed here rather than handed to croniter because croniter accepts, and
silently reads differently from other crons, several inputs that raypipe must refuse: 6
and 7 fields, ``H``/``R`` hashes, ``W``, equal ranges such as ``1-1`` (croniter expands
them to the whole cycle), wrapping ranges; and its messages do not name the field. The
unit tests check that this parser and croniter (``day_or=True``) agree on the fire times
of the standard syntax they share.

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

Implementation: candidate wall-clock times are enumerated as naive datetimes, day by day.
On a day with one UTC offset throughout (nearly every day) a wall time maps to UTC by
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

import calendar
import heapq
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cached_property, lru_cache

__all__ = [
    "ALIASES",
    "MAX_LENGTH",
    "CronError",
    "CronExpression",
    "cron_instants",
    "parse_cron",
]


#: The aliases raypipe accepts and the 5-field expressions they stand for.
ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# What each field accepts, as told to a user whose value is out of range.
_RANGE_HINTS = (
    "0-59",
    "0-23; midnight is 0",
    "1-31",
    "1-12 or JAN-DEC",
    "0-7 or SUN-SAT; 0 and 7 are both Sunday",
)
# (lowest, highest) number accepted in each field; day-of-week accepts 7 for Sunday.
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# Range that `*` stands for; day-of-week stops at 6 so Sunday is not counted twice.
_STAR = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MINUTE, _HOUR, _DOM, _MONTH, _DOW = range(5)

_ITEM_RE = re.compile(r"^(?P<start>\*|[0-9a-z]+)(?:-(?P<end>[0-9a-z]+))?(?:/(?P<step>[0-9]+))?$")
_NTH_RE = re.compile(r"^(?P<day>[0-9a-z]+)#(?P<n>[0-9]+)$")
_LAST_WEEKDAY_RE = re.compile(r"^(?P<day>[0-9a-z]+)l$")
# Searching 2001-2028 covers every calendar of 1901-2099 (see the module docstring).
_PROBE_YEARS = range(2001, 2029)
# A parsed cron whose day pattern matched nothing in this many months never fires; with
# 2001-2028 already probed at parse time this only guards against endless loops.
_MAX_EMPTY_MONTHS = 12 * 401
_LAST_YEAR = 9998  # leave room for arithmetic below datetime.max
#: The longest cron expression accepted (every minute listed one by one fits).
MAX_LENGTH = 1024


class CronError(ValueError):
    """A cron expression that raypipe refuses.

    Attributes:
        expression: The expression as written.
        problems: One sentence per problem, each naming the field it is about.
    """

    def __init__(self, expression: str, problems: Sequence[str]) -> None:
        self.expression = expression
        self.problems = tuple(problems)
        super().__init__(f"invalid cron expression {expression!r}: " + "; ".join(self.problems))


@dataclass(frozen=True, eq=False)
class CronExpression:
    """A parsed, valid cron expression. Build it with :func:`parse_cron`.

    Values are cron's: months 1-12, weekdays 0-6 with 0 = Sunday (a 7 in the text is
    stored as 0).
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    last_day: bool
    months: frozenset[int]
    weekdays: frozenset[int]
    nth_weekdays: frozenset[tuple[int, int]]
    last_weekdays: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool

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
        """The days of ``year``-``month`` that match the day fields, ignoring the month field."""
        cache = self._month_cache
        days = cache.get((year, month))
        if days is None:
            if len(cache) >= 64:  # iteration is sequential, so a small cache suffices
                cache.clear()
            days = cache[(year, month)] = self._compute_month_days(year, month)
        return days

    def _compute_month_days(self, year: int, month: int) -> tuple[int, ...]:
        first_weekday, length = calendar.monthrange(year, month)
        matched = []
        for day in range(1, length + 1):
            # calendar counts weekdays from Monday = 0; cron from Sunday = 0.
            weekday = (first_weekday + day) % 7
            dom = day in self.days or (self.last_day and day == length)
            dow = (
                weekday in self.weekdays
                or (weekday, (day - 1) // 7 + 1) in self.nth_weekdays
                or (weekday in self.last_weekdays and day > length - 7)
            )
            if self.dom_restricted and self.dow_restricted:
                ok = dom or dow
            elif self.dom_restricted:
                ok = dom
            elif self.dow_restricted:
                ok = dow
            else:
                ok = True
            if ok:
                matched.append(day)
        return tuple(matched)

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
    """Parse and validate a 5-field cron expression or an alias.

    Args:
        expression: Such as ``"*/15 9-17 * * MON-FRI"`` or ``"@daily"``.

    Returns:
        The parsed expression.

    Raises:
        CronError: With every problem found, each naming its field.
    """
    text = expression.strip()
    if not text:
        raise CronError(expression, ["the cron expression is empty"])
    if len(text) > MAX_LENGTH:
        raise CronError(expression[:40] + "...", [f"it is longer than {MAX_LENGTH} characters"])
    if text.startswith("@"):
        alias = text.lower()
        if alias == "@reboot":
            raise CronError(
                expression,
                [
                    "@reboot runs when a machine boots, which a schedule has no notion of; "
                    "use a once trigger, or trigger the schedule by hand"
                ],
            )
        if alias not in ALIASES:
            raise CronError(
                expression,
                [f"unknown alias {text!r}; raypipe knows " + ", ".join(ALIASES)],
            )
        text = ALIASES[alias]
    fields = text.split()
    if len(fields) != 5:
        raise CronError(expression, [_field_count_problem(len(fields))])

    problems: list[str] = []
    parsed = []
    for index, raw in enumerate(fields):
        try:
            parsed.append(_parse_field(index, raw.lower()))
        except _FieldError as exc:
            problems.append(f"{_FIELD_NAMES[index]} field: {exc}")
    if problems:
        raise CronError(expression, problems)

    minutes, hours, dom, months, dow = parsed
    cron = CronExpression(
        expression=expression,
        minutes=tuple(sorted(minutes.values)),
        hours=tuple(sorted(hours.values)),
        days=frozenset(dom.values),
        last_day=dom.last,
        months=frozenset(months.values),
        weekdays=frozenset(0 if v == 7 else v for v in dow.values),
        nth_weekdays=frozenset((0 if d == 7 else d, n) for d, n in dow.nth),
        last_weekdays=frozenset(0 if d == 7 else d for d in dow.last_weekdays),
        dom_restricted=fields[_DOM] != "*",
        dow_restricted=fields[_DOW] != "*",
    )
    if not _can_fire(cron):
        raise CronError(expression, [_never_fires_problem(fields, cron)])
    return cron


def _field_count_problem(count: int) -> str:
    layout = "minute hour day-of-month month day-of-week"
    if count == 6:
        return (
            f"it has 6 fields; raypipe uses standard 5-field cron ({layout}). croniter "
            "would read a 6th field as seconds and Quartz reads the first field as seconds, "
            "so a 6-field expression means different schedules in different tools: drop "
            "the seconds field (schedules fire at most once a minute)"
        )
    if count == 7:
        return (
            f"it has 7 fields (seconds and a year, as in Quartz); raypipe uses standard "
            f"5-field cron ({layout}): drop the seconds and year fields"
        )
    plural = "s" if count != 1 else ""
    return f"it has {count} field{plural}; raypipe uses 5 ({layout}), such as '30 2 * * *'"


class _FieldError(Exception):
    pass


@dataclass
class _Field:
    values: set[int] = field(default_factory=set)
    last: bool = False  # day-of-month `L`
    nth: set[tuple[int, int]] = field(default_factory=set)  # day-of-week `d#n`
    last_weekdays: set[int] = field(default_factory=set)  # day-of-week `dL`


def _parse_field(index: int, text: str) -> _Field:
    result = _Field()
    for item in text.split(","):
        _parse_item(index, item, result)
    return result


def _parse_item(index: int, item: str, into: _Field) -> None:
    if not item:
        raise _FieldError("empty list item (two commas in a row, or a trailing comma?)")
    if item == "?":
        raise _FieldError("'?' is Quartz syntax; in 5-field cron write '*'")
    if item[0] in "hr" and (item in ("h", "r") or item[1] in "(/"):
        raise _FieldError(f"'{item.upper()}' (hashed or random values) is not standard cron")
    if index == _DOM:
        if item == "l":
            into.last = True
            return
        if "w" in item:
            raise _FieldError(f"'{item.upper()}' (nearest weekday) is not supported")
    if index == _DOW:
        nth = _NTH_RE.match(item)
        if nth:
            n = int(nth["n"])
            if not 1 <= n <= 5:
                raise _FieldError(
                    f"in '{item.upper()}' the n of weekday#n must be 1-5 (no month has a "
                    "6th weekday)"
                )
            into.nth.add((_value(index, nth["day"]), n))
            return
        last = _LAST_WEEKDAY_RE.match(item)
        if last:
            into.last_weekdays.add(_value(index, last["day"]))
            return
        if item[0] == "l" and item[1:].isdigit():
            raise _FieldError(
                f"'{item.upper()}' is croniter's spelling; for the last weekday d of the "
                f"month write {item[1:]}L"
            )
    if ("l" in item and index not in (_MONTH, _DOW)) or item == "l":
        raise _FieldError(
            "'L' is only allowed in day-of-month (the last day of the month) and as "
            "weekday L in day-of-week ('5L': the last Friday)"
        )
    if "#" in item:
        if index == _DOW:
            raise _FieldError(f"'{item.upper()}': weekday#n takes one weekday and n in 1-5")
        raise _FieldError(f"'{item}': '#' is only allowed in day-of-week, as weekday#n")
    match = _ITEM_RE.match(item)
    if not match:
        raise _FieldError(
            f"'{item}' is not cron syntax (expected *, a number, a range a-b, a step */n "
            "or a-b/n, or a comma-separated list of these)"
        )
    start, end, step_text = match["start"], match["end"], match["step"]
    star_low, star_high = _STAR[index]
    if start == "*":
        if end is not None:
            raise _FieldError(f"'{item}': '*' cannot start a range")
        low, high = star_low, star_high
    else:
        low = _value(index, start)
        if end is not None:
            high = _value(index, end)
            if high < low:
                raise _FieldError(
                    f"range {start.upper()}-{end.upper()} runs backwards; cron ranges do not "
                    f"wrap around: write it as two ranges, {_split_range(index, start, end)}"
                )
        elif step_text is not None:
            high = max(low, star_high)  # `a/n` runs from a to the field's maximum
        else:
            high = low
    step = 1
    if step_text is not None:
        step = int(step_text)
        if step == 0:
            raise _FieldError(f"'{item}': a step must be at least 1")
        if step > high - low:
            # `*/90` in minutes is minute 0 only, not every 90 minutes: a common mistake
            # that croniter and most crons accept silently.
            span = f"the {_FIELD_NAMES[index]} field's range" if start == "*" else "its range"
            raise _FieldError(
                f"step {step} in '{item}' is larger than {span} ({low}-{high}), so it "
                f"selects only {low}: cron steps restart every hour, day, month or year "
                "instead of carrying over; use an interval trigger for a fixed spacing"
            )
    into.values.update(range(low, high + 1, step))


def _split_range(index: int, start: str, end: str) -> str:
    low, high = _STAR[index]
    if start.isalpha() and index == _MONTH:
        low_text, high_text = "JAN", "DEC"
    elif start.isalpha() and index == _DOW:
        low_text, high_text = "SUN", "SAT"
    else:
        low_text, high_text = str(low), str(high)
    return f"{start.upper()}-{high_text},{low_text}-{end.upper()}"


def _value(index: int, token: str) -> int:
    names = _MONTH_NAMES if index == _MONTH else _DAY_NAMES if index == _DOW else {}
    if token.isdigit():
        value = int(token)
    elif token in names:
        return names[token]
    elif names:
        example = "JAN-DEC" if index == _MONTH else "SUN-SAT"
        raise _FieldError(f"'{token.upper()}' is neither a number nor a name ({example})")
    else:
        raise _FieldError(f"'{token}' is not a number")
    low, high = _BOUNDS[index]
    if not low <= value <= high:
        raise _FieldError(f"{value} is out of range ({_RANGE_HINTS[index]})")
    return value


def _can_fire(cron: CronExpression) -> bool:
    for year in _PROBE_YEARS:
        for month in sorted(cron.months):
            if cron._compute_month_days(year, month):
                return True
    return False


def _never_fires_problem(fields: list[str], cron: CronExpression) -> str:
    names = [calendar.month_name[m] for m in sorted(cron.months)]
    months = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"it can never fire: day-of-month {fields[_DOM]} does not occur in {months} in any year"


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
