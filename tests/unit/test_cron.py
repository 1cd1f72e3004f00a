"""Cron parsing and validation, and fire instants across DST changes in several zones.

Transition instants used below come from tzdata (2025/2026 rules):
America/New_York 2025-03-09 07:00Z (02:00 -> 03:00) and 2025-11-02 06:00Z (02:00 -> 01:00);
Europe/Berlin 2025-03-30 01:00Z (02:00 -> 03:00) and 2025-10-26 01:00Z (03:00 -> 02:00);
Australia/Lord_Howe 2025-04-05 15:00Z (02:00 -> 01:30) and 2025-10-04 15:30Z (02:00 -> 02:30);
America/Santiago 2025-04-06 03:00Z (24:00 Apr 5 -> 23:00 Apr 5) and 2025-09-07 04:00Z
(00:00 -> 01:00), 2026-04-05 03:00Z and 2026-09-06 04:00Z.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from control_plane.schedules.timing.cron import CronError, CronExpression, cron_instants, parse_cron

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SANTIAGO = ZoneInfo("America/Santiago")
ZUTC = ZoneInfo("UTC")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(expr: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    return list(itertools.islice(cron_instants(parse_cron(expr), zone, after), count))


def fires_until(expr: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    return list(
        itertools.takewhile(lambda t: t <= until, cron_instants(parse_cron(expr), zone, after))
    )


def local(instants: Iterable[datetime], zone: ZoneInfo) -> list[str]:
    """Instants as local wall time with offset, e.g. '2025-03-09 03:30-04:00'."""
    return [t.astimezone(zone).strftime("%Y-%m-%d %H:%M%z") for t in instants]


# -- the invariant walker ----------------------------------------------------------------------


def _offsets(zone: ZoneInfo, wall: datetime) -> tuple[timedelta, timedelta]:
    off0, off1 = zone.utcoffset(wall), zone.utcoffset(wall.replace(fold=1))
    assert off0 is not None
    assert off1 is not None
    return off0, off1


def explain(cron: CronExpression, zone: ZoneInfo, instant: datetime) -> datetime:
    """The wall time that produced ``instant`` under the DST policy, or fail.

    Either the instant's own wall time matches the cron (and, for a wall-clock cron, a
    repeated wall time fires at its first occurrence only), or it is a nonexistent wall
    time that matches, shifted forward by the gap (wall-clock crons only).
    """
    wall = instant.astimezone(zone).replace(tzinfo=None)
    off0, off1 = _offsets(zone, wall)
    if cron.matches(wall):
        if not cron.every_hour and off0 != off1:
            assert instant == (wall - off0).replace(tzinfo=UTC), f"{instant}: not first occurrence"
        return wall
    assert not cron.every_hour, f"{instant} ({wall}) does not match {cron.expression!r}"
    now_offset = instant.astimezone(zone).utcoffset()
    assert now_offset is not None
    for back in (timedelta(hours=1), timedelta(hours=3), timedelta(hours=25)):
        before = (instant - back).astimezone(zone).utcoffset()
        assert before is not None
        gap = now_offset - before
        if gap > timedelta(0):
            source = wall - gap
            g0, g1 = _offsets(zone, source)
            if g0 < g1 and cron.matches(source) and (source - g0).replace(tzinfo=UTC) == instant:
                return source
    raise AssertionError(f"{instant} ({wall}) is neither a match nor a shifted gap time")


def walk(expr: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """All fires in (after, until], checked: strictly increasing, each explained by the
    policy, and no wall time fires twice."""
    cron = parse_cron(expr)
    result = fires_until(expr, zone, after, until)
    assert all(a < b for a, b in itertools.pairwise(result)), "not strictly increasing"
    sources = [explain(cron, zone, t) for t in result]
    if not cron.every_hour:
        assert len(set(sources)) == len(sources), "a wall time fired twice"
    return result


def brute_force(expr: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """The policy restated minute by minute, independently of the iterator's tricks."""
    cron = parse_cron(expr)
    wall = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - timedelta(days=2)
    end = until.astimezone(zone).replace(tzinfo=None) + timedelta(days=2)
    found: set[datetime] = set()
    while wall <= end:
        if cron.matches(wall):
            off0, off1 = _offsets(zone, wall)
            if cron.every_hour:
                # every real instant whose wall clock reads `wall`
                for off in {off0, off1}:
                    instant = (wall - off).replace(tzinfo=UTC)
                    if instant.astimezone(zone).replace(tzinfo=None) == wall:
                        found.add(instant)
            else:
                found.add((wall - off0).replace(tzinfo=UTC))  # fold=0: shifted / first
        wall += timedelta(minutes=1)
    return sorted(t for t in found if after < t <= until)


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "minutes", "hours"),
    [
        ("*/15 * * * *", (0, 15, 30, 45), tuple(range(24))),
        ("1-30/5 9-17 * * *", (1, 6, 11, 16, 21, 26), tuple(range(9, 18))),
        ("5,35 */6 * * *", (5, 35), (0, 6, 12, 18)),
        ("10/20 0 * * *", (10, 30, 50), (0,)),
        ("0 0-23/1 * * *", (0,), tuple(range(24))),
        ("59 23 * * *", (59,), (23,)),
        ("@hourly", (0,), tuple(range(24))),
        ("@daily", (0,), (0,)),
        ("  0   12 * * *  ", (0,), (12,)),
    ],
)
def test_minutes_and_hours(expr: str, minutes: tuple[int, ...], hours: tuple[int, ...]) -> None:
    cron = parse_cron(expr)
    assert cron.minutes == minutes
    assert cron.hours == hours


def test_names_are_case_insensitive_and_seven_is_sunday() -> None:
    assert parse_cron("0 0 * jan-MAR Mon-fri").months == frozenset({1, 2, 3})
    assert parse_cron("0 0 * * MON-FRI").weekdays == frozenset({1, 2, 3, 4, 5})
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * SUN").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == frozenset({5, 6, 0})
    assert parse_cron("0 0 * * 0-7").weekdays == frozenset(range(7))


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases(alias: str, same_as: str) -> None:
    after = utc(2025, 1, 1, 0, 30)
    assert fires(alias, ZUTC, after, 5) == fires(same_as, ZUTC, after, 5)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("60 * * * *", ["minute field: 60 is out of range (0-59)"]),
        ("* 24 * * *", ["hour field: 24 is out of range (0-23; midnight is 0)"]),
        ("* * 0 * *", ["day-of-month field: 0 is out of range (1-31)"]),
        ("* * 32 * *", ["day-of-month field: 32 is out of range (1-31)"]),
        ("* * * 13 *", ["month field: 13 is out of range (1-12 or JAN-DEC)"]),
        ("* * * 0 *", ["month field: 0 is out of range"]),
        ("* * * * 8", ["day-of-week field: 8 is out of range (0-7 or SUN-SAT; 0 and 7"]),
        ("60 24 * * *", ["minute field: 60", "hour field: 24"]),
        ("0 0 * * * *", ["6 fields", "croniter would read a 6th field as seconds"]),
        ("*/5 * * * * *", ["6 fields", "drop the seconds field"]),
        ("0 0 12 * * ? 2025", ["7 fields"]),
        ("* * *", ["3 fields", "raypipe uses 5"]),
        ("", ["empty"]),
        ("@reboot", ["@reboot runs when a machine boots"]),
        ("@every_minute", ["unknown alias '@every_minute'", "@hourly"]),
        ("0 0 30 2 *", ["can never fire: day-of-month 30 does not occur in February"]),
        ("0 0 31 4 *", ["can never fire: day-of-month 31 does not occur in April"]),
        (
            "0 0 31 2,4,6,9,11 *",
            ["day-of-month 31 does not occur in February, April, June, September or November"],
        ),
        ("0 0 30,31 FEB *", ["can never fire"]),
        ("*/90 * * * *", ["step 90", "selects only 0", "interval trigger"]),
        ("0 */24 * * *", ["step 24 in '*/24' is larger than the hour field's range (0-23)"]),
        ("0/60 * * * *", ["step 60"]),
        ("*/0 * * * *", ["a step must be at least 1"]),
        ("5-1 * * * *", ["range 5-1 runs backwards", "5-59,0-1"]),
        ("0 0 * * FRI-MON", ["range FRI-MON runs backwards", "FRI-SAT,SUN-MON"]),
        ("0 0 * NOV-FEB *", ["NOV-DEC,JAN-FEB"]),
        ("0 0 ? * *", ["'?' is Quartz syntax"]),
        ("H * * * *", ["'H' (hashed or random values) is not standard cron"]),
        ("0 0 15W * *", ["'15W' (nearest weekday) is not supported"]),
        ("0 0 * * 1#6", ["weekday#n must be 1-5"]),
        ("0 0 * * 1#0", ["weekday#n must be 1-5"]),
        ("0 L * * *", ["hour field: 'L' is only allowed in day-of-month"]),
        ("0 0 * * L", ["day-of-week field: 'L' is only allowed"]),
        ("0 0 1#2 * *", ["day-of-month field: '1#2': '#' is only allowed in day-of-week"]),
        ("a * * * *", ["minute field: 'a' is not a number"]),
        ("0 0 * FOO *", ["month field: 'FOO' is neither a number nor a name (JAN-DEC)"]),
        ("1,,2 * * * *", ["minute field: empty list item"]),
        ("*-5 * * * *", ["'*' cannot start a range"]),
        ("1-2-3 * * * *", ["minute field: '1-2-3' is not cron syntax"]),
        ("0 9 * * L5", ["'L5' is croniter's spelling", "write 5L"]),
        ("0 9 * * 1-5#2", ["weekday#n takes one weekday"]),
        ("0 " * 600 + "*", ["longer than 1024 characters"]),
    ],
)
def test_refusals_name_the_field(expr: str, expected: list[str]) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    text = " | ".join(info.value.problems)
    for part in expected:
        assert part in text
    if len(expr) < 100:
        assert info.value.expression == expr
        assert repr(expr) in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(CronError) as info:
        parse_cron("60 24 0 13 8")
    assert [p.split(" field")[0] for p in info.value.problems] == [
        "minute",
        "hour",
        "day-of-month",
        "month",
        "day-of-week",
    ]


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 29 2 *",  # leap days only
        "0 0 30 2 1",  # day-of-month never matches, but day-of-week does (OR)
        "0 0 * 2 1#5",  # a fifth Monday in February needs a leap year starting on Monday
        "0 0 L 2 *",
        "0 0 31 1-12 *",
    ],
)
def test_rare_but_possible_crons_are_accepted(expr: str) -> None:
    assert fires(expr, ZUTC, utc(2025, 1, 1), 1)


# -- day matching semantics --------------------------------------------------------------------


def days_of(expr: str, year: int, month: int) -> list[int]:
    after = datetime(year, month, 1, tzinfo=UTC) - timedelta(microseconds=1)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return [t.day for t in fires_until(expr, ZUTC, after, end - timedelta(microseconds=1))]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # January 2025: Mondays are 6, 13, 20, 27.
    assert days_of("0 0 1,15 * MON", 2025, 1) == [1, 6, 13, 15, 20, 27]
    assert days_of("0 0 * * MON", 2025, 1) == [6, 13, 20, 27]
    assert days_of("0 0 1,15 * *", 2025, 1) == [1, 15]
    # Friday the 13th is "the 13th or any Friday", as in every POSIX cron.
    assert days_of("0 0 13 * FRI", 2025, 6) == [6, 13, 20, 27]
    # A stepped field is restricted too (no Vixie `*` quirk): odd days or Mondays.
    odd_or_monday = sorted(set(range(1, 32, 2)) | {6, 13, 20, 27})
    assert days_of("0 0 */2 * 1", 2025, 1) == odd_or_monday


def test_last_day_of_month() -> None:
    assert [days_of("0 0 L * *", 2024, m) for m in (1, 2, 4)] == [[31], [29], [30]]
    assert days_of("0 0 L 2 *", 2025, 2) == [28]
    assert days_of("0 0 15,L * *", 2025, 4) == [15, 30]


def test_nth_and_last_weekday() -> None:
    assert days_of("0 9 * * 1#2", 2025, 1) == [13]  # second Monday
    assert days_of("0 9 * * MON#1,FRI#3", 2025, 1) == [6, 17]
    assert days_of("0 9 * * 5L", 2025, 1) == [31]  # last Friday
    assert days_of("0 9 * * 5L", 2025, 2) == [28]
    assert days_of("0 9 * * 0#5", 2025, 3) == [30]
    assert days_of("0 9 * * 0#5", 2025, 2) == []  # no fifth Sunday in February 2025
    assert days_of("0 9 * * 1,3#1", 2025, 1) == [1, 6, 13, 20, 27]  # Mondays or 1st Wednesday
    # with a restricted day-of-month, '#' joins the OR like any day-of-week value
    assert days_of("0 0 8 * 1#2", 2025, 1) == [8, 13]


def test_month_ends_and_leap_days() -> None:
    after = utc(2025, 1, 1)
    months = [t.month for t in fires("0 0 31 * *", ZUTC, after, 7)]
    assert months == [1, 3, 5, 7, 8, 10, 12]
    leap = fires("0 0 29 2 *", ZUTC, after, 3)
    assert leap == [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]
    # 2100 is not a leap year
    assert fires("0 0 29 2 *", ZUTC, utc(2097, 1, 1), 1) == [utc(2104, 2, 29)]


# -- croniter as the reference for the syntax both support -------------------------------------

SHARED_SYNTAX = [
    "*/15 * * * *",
    "0 9-17 * * MON-FRI",
    "30 2 * * *",
    "0 0 1,15 * MON",
    "0 0 13 * 5",
    "0 0 */2 * 1",
    "0 0 1-7 * 1",
    "0 0 L * *",
    "0 0 L * 5",
    "0 9 * * 1#2",
    "0 0 29 2 *",
    "0 0 31 * *",
    "5,35 */3 * JAN,JUL *",
    "0 12 * * 0,7",
    "0 0 * * 5-7",
    "10-50/20 1-22/7 2-30/3 * *",
    "@weekly",
    "@monthly",
    "@yearly",
    "59 23 31 12 *",
]


@pytest.mark.parametrize("expr", SHARED_SYNTAX)
def test_agrees_with_croniter(expr: str) -> None:
    for start in (datetime(2024, 2, 27, 13, 7), datetime(2025, 12, 31, 23, 59)):
        reference = croniter(expr, start, day_or=True)
        expected = [reference.get_next(datetime).replace(tzinfo=UTC) for _ in range(60)]
        assert fires(expr, ZUTC, start.replace(tzinfo=UTC), 60) == expected


def test_last_weekday_agrees_with_croniter_spelling() -> None:
    reference = croniter("0 9 * * L5", datetime(2025, 1, 1), day_or=True)
    expected = [reference.get_next(datetime).replace(tzinfo=UTC) for _ in range(24)]
    assert fires("0 9 * * 5L", ZUTC, utc(2025, 1, 1), 24) == expected


def test_croniter_divergences_that_raypipe_refuses_or_fixes() -> None:
    start = datetime(2025, 1, 1)
    # croniter reads a 6th field as seconds: refused here.
    assert croniter.is_valid("*/5 * * * * *")
    # croniter expands an equal range to the whole cycle: here 1-1 is Monday only.
    croniter_days = croniter("0 0 * * 1-1", start)
    assert croniter_days.get_next(datetime).weekday() != 0
    assert {t.weekday() for t in fires("0 0 * * 1-1", ZUTC, utc(2025, 1, 1), 5)} == {0}
    # croniter intersects d#n with day-of-month instead of joining the OR, and refuses
    # plain weekdays mixed with d#n: raypipe hands it one expression per day field.
    intersected = croniter("0 0 8 * 1#2", start, day_or=True)
    assert intersected.get_next(datetime).day == 13
    assert days_of("0 0 8 * 1#2", 2025, 1) == [8, 13]
    assert parse_cron("0 0 8 * 1,3#1,5L").day_parts == (
        "0 0 8 1,2,3,4,5,6,7,8,9,10,11,12 *",
        "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 1",
        "0 0 * 1,2,3,4,5,6,7,8,9,10,11,12 3#1,L5",
    )


def test_croniter_reads_the_canonical_form_of_every_field() -> None:
    # Ranges, steps, names and 7 for Sunday reach croniter as plain lists.
    cron = parse_cron("1-1 0-23/12 L JAN-FEB 7,6L")
    assert cron.minutes == (1,)
    assert cron.hours == (0, 12)
    assert cron.months == frozenset({1, 2})
    assert cron.day_parts == ("0 0 L 1,2 *", "0 0 * 1,2 0", "0 0 * 1,2 L6")


# -- fire instants across DST ------------------------------------------------------------------


def test_new_york_spring_forward() -> None:
    day_before = utc(2025, 3, 8, 12)
    assert local(fires("30 2 * * *", NEW_YORK, day_before, 3), NEW_YORK) == [
        "2025-03-09 03:30-0400",  # 02:30 does not exist: shifted by the gap
        "2025-03-10 02:30-0400",
        "2025-03-11 02:30-0400",
    ]
    assert fires("30 2 * * *", NEW_YORK, day_before, 1) == [utc(2025, 3, 9, 7, 30)]
    assert local(fires("0,30 2 * * *", NEW_YORK, day_before, 2), NEW_YORK) == [
        "2025-03-09 03:00-0400",
        "2025-03-09 03:30-0400",
    ]
    # 02:00 shifts onto 03:00, which also fires on its own: once.
    assert local(fires("0 2,3 * * *", NEW_YORK, day_before, 3), NEW_YORK) == [
        "2025-03-09 03:00-0400",
        "2025-03-10 02:00-0400",
        "2025-03-10 03:00-0400",
    ]
    # Shifted times overtake later wall times: 02:45 -> 03:45 comes after 03:15.
    assert local(fires("15,45 2,3 * * *", NEW_YORK, day_before, 3), NEW_YORK) == [
        "2025-03-09 03:15-0400",
        "2025-03-09 03:45-0400",
        "2025-03-10 02:15-0400",
    ]


def test_new_york_spring_forward_every_hour() -> None:
    # Every-hour crons fire at real instants: nothing at 02:xx, nothing doubled at 03:xx.
    got = fires_until("*/30 * * * *", NEW_YORK, utc(2025, 3, 9, 5, 59), utc(2025, 3, 9, 8, 0))
    assert local(got, NEW_YORK) == [
        "2025-03-09 01:00-0500",
        "2025-03-09 01:30-0500",
        "2025-03-09 03:00-0400",
        "2025-03-09 03:30-0400",
        "2025-03-09 04:00-0400",
    ]
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(got))
    half_past = fires_until("30 * * * *", NEW_YORK, utc(2025, 3, 9, 5), utc(2025, 3, 9, 9))
    assert half_past == [
        utc(2025, 3, 9, 5, 30),
        utc(2025, 3, 9, 6, 30),
        utc(2025, 3, 9, 7, 30),
        utc(2025, 3, 9, 8, 30),
    ]


def test_new_york_fall_back() -> None:
    after = utc(2025, 11, 1, 12)
    # 01:30 happens twice: a wall-clock cron fires at the first, EDT.
    assert fires("30 1 * * *", NEW_YORK, after, 2) == [
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 3, 6, 30),
    ]
    # An every-hour cron fires in both real hours.
    got = fires_until("*/30 * * * *", NEW_YORK, utc(2025, 11, 2, 4, 59), utc(2025, 11, 2, 7))
    assert local(got, NEW_YORK) == [
        "2025-11-02 01:00-0400",
        "2025-11-02 01:30-0400",
        "2025-11-02 01:00-0500",
        "2025-11-02 01:30-0500",
        "2025-11-02 02:00-0500",
    ]
    # `*/30 1 * * *` restricts the hour, so it follows wall-clock rules: first pass only.
    got = fires_until("*/30 1 * * *", NEW_YORK, utc(2025, 11, 2, 4), utc(2025, 11, 2, 8))
    assert local(got, NEW_YORK) == ["2025-11-02 01:00-0400", "2025-11-02 01:30-0400"]


def test_next_fire_from_inside_the_repeated_hour() -> None:
    # From 01:45 EDT the next `30 * * * *` is 01:30 EST (the second real 01:30).
    after = datetime(2025, 11, 2, 1, 45, tzinfo=NEW_YORK)
    assert fires("30 * * * *", NEW_YORK, after, 1) == [utc(2025, 11, 2, 6, 30)]
    # A wall-clock cron already fired 01:30 (EDT) and does not fire it again.
    assert fires("30 1 * * *", NEW_YORK, after, 1) == [utc(2025, 11, 3, 6, 30)]
    # From 03:10 EDT on spring-forward day the shifted 02:45 (= 03:45) is still ahead.
    after = utc(2025, 3, 9, 7, 10)
    assert fires("45 2 * * *", NEW_YORK, after, 1) == [utc(2025, 3, 9, 7, 45)]


def test_berlin() -> None:
    spring = fires("30 2 * * *", BERLIN, utc(2025, 3, 29, 12), 2)
    assert local(spring, BERLIN) == ["2025-03-30 03:30+0200", "2025-03-31 02:30+0200"]
    assert spring[0] == utc(2025, 3, 30, 1, 30)
    fall = fires("30 2 * * *", BERLIN, utc(2025, 10, 25, 12), 2)
    assert fall == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]
    got = fires_until("*/20 * * * *", BERLIN, utc(2025, 10, 25, 23, 50), utc(2025, 10, 26, 2))
    assert local(got, BERLIN) == [
        "2025-10-26 02:00+0200",
        "2025-10-26 02:20+0200",
        "2025-10-26 02:40+0200",
        "2025-10-26 02:00+0100",
        "2025-10-26 02:20+0100",
        "2025-10-26 02:40+0100",
        "2025-10-26 03:00+0100",
    ]


def test_lord_howe_thirty_minute_shift() -> None:
    # Spring forward 2025-10-05: 02:00 +10:30 -> 02:30 +11.
    after = utc(2025, 10, 4, 12)
    assert fires("0 2 * * *", LORD_HOWE, after, 1) == [utc(2025, 10, 4, 15, 30)]  # 02:30 +11
    assert fires("15 2 * * *", LORD_HOWE, after, 1) == [utc(2025, 10, 4, 15, 45)]  # 02:45
    # 02:00 shifts onto 02:30, which also fires: once.
    assert local(fires("0,30 2 * * *", LORD_HOWE, after, 2), LORD_HOWE) == [
        "2025-10-05 02:30+1100",
        "2025-10-06 02:00+1100",
    ]
    got = fires_until("*/15 * * * *", LORD_HOWE, utc(2025, 10, 4, 15), utc(2025, 10, 4, 16))
    assert local(got, LORD_HOWE) == [
        "2025-10-05 01:45+1030",
        "2025-10-05 02:30+1100",
        "2025-10-05 02:45+1100",
        "2025-10-05 03:00+1100",
    ]
    # Fall back 2025-04-06: 02:00 +11 -> 01:30 +10:30; 01:30-01:59 happens twice.
    assert fires("45 1 * * *", LORD_HOWE, utc(2025, 4, 5, 12), 1) == [utc(2025, 4, 5, 14, 45)]
    got = fires_until("*/15 * * * *", LORD_HOWE, utc(2025, 4, 5, 14, 20), utc(2025, 4, 5, 15, 30))
    assert got == [utc(2025, 4, 5, 14, 30) + timedelta(minutes=15 * i) for i in range(5)]
    assert local(got, LORD_HOWE)[2] == "2025-04-06 01:30+1030"


def test_santiago_skips_midnight() -> None:
    for year, spring_day, fall_day in ((2025, 7, 6), (2026, 6, 5)):
        # Spring forward: 00:00 does not exist, so the daily midnight cron fires at 01:00.
        got = fires("0 0 * * *", SANTIAGO, utc(year, 9, spring_day - 2, 12), 3)
        assert local(got, SANTIAGO) == [
            f"{year}-09-{spring_day - 1:02d} 00:00-0400",
            f"{year}-09-{spring_day:02d} 01:00-0300",
            f"{year}-09-{spring_day + 1:02d} 00:00-0300",
        ]
        assert got[1] == utc(year, 9, spring_day, 4)
        assert got[2] - got[1] == timedelta(hours=23)
        # Fall back: 23:00-23:59 of the Saturday happens twice; midnight is once.
        got = fires("0 0 * * *", SANTIAGO, utc(year, 4, fall_day - 2, 12), 3)
        assert got == [
            utc(year, 4, fall_day - 1, 3),
            utc(year, 4, fall_day, 4),
            utc(year, 4, fall_day + 1, 4),
        ]
        assert fires("0 23 * * *", SANTIAGO, utc(year, 4, fall_day - 1, 12), 1) == [
            utc(year, 4, fall_day, 2)  # the first 23:00, -03
        ]
        late = fires_until(
            "30 * * * *", SANTIAGO, utc(year, 4, fall_day, 1), utc(year, 4, fall_day, 5)
        )
        assert late == [utc(year, 4, fall_day, h, 30) for h in (1, 2, 3, 4)]


@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN, LORD_HOWE, SANTIAGO])
@pytest.mark.parametrize("expr", ["0 0 * * *", "30 2 * * *", "30 1 * * *", "0 23 * * *"])
def test_daily_crons_fire_once_every_day_for_ten_years(zone: ZoneInfo, expr: str) -> None:
    after = datetime(2025, 1, 1, tzinfo=zone) - timedelta(microseconds=1)
    until = datetime(2035, 1, 1, tzinfo=zone) - timedelta(microseconds=1)
    got = walk(expr, zone, after, until)
    days = [t.astimezone(zone).date() for t in got]
    assert len(days) == (date(2035, 1, 1) - date(2025, 1, 1)).days
    assert len(set(days)) == len(days)


@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN, LORD_HOWE, SANTIAGO, ZUTC])
def test_every_five_minutes_for_a_year(zone: ZoneInfo) -> None:
    after = utc(2025, 1, 1)
    got = fires_until("*/5 * * * *", zone, after, utc(2026, 1, 1))
    # Every-hour crons follow real time: exactly 5 minutes apart, through every change.
    assert len(got) == 365 * 24 * 12
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(got))


TRANSITION_WINDOWS = [
    (NEW_YORK, utc(2025, 3, 8)),
    (NEW_YORK, utc(2025, 11, 1)),
    (BERLIN, utc(2025, 3, 29)),
    (BERLIN, utc(2025, 10, 25)),
    (LORD_HOWE, utc(2025, 4, 4)),
    (LORD_HOWE, utc(2025, 10, 3)),
    (SANTIAGO, utc(2025, 4, 4)),
    (SANTIAGO, utc(2025, 9, 5)),
]
WINDOW_CRONS = [
    "*/15 * * * *",
    "30 * * * *",
    "0 * * * *",
    "0,30 2 * * *",
    "0 2,3 * * *",
    "15,45 1-3 * * *",
    "*/10 0-3 * * *",
    "0 0 * * *",
    "0 23 * * *",
    "* 1 * * *",
    "*/7 22-23,0-2 * * *",
]


@pytest.mark.parametrize(("zone", "start"), TRANSITION_WINDOWS)
@pytest.mark.parametrize("expr", WINDOW_CRONS)
def test_matches_brute_force_around_transitions(zone: ZoneInfo, start: datetime, expr: str) -> None:
    until = start + timedelta(days=3)
    assert walk(expr, zone, start, until) == brute_force(expr, zone, start, until)


@pytest.mark.parametrize(("zone", "start"), TRANSITION_WINDOWS)
def test_starting_anywhere_gives_the_same_sequence(zone: ZoneInfo, start: datetime) -> None:
    # next-fire from any instant equals the tail of one long walk (the look-back works).
    for expr in ("15,45 1-3 * * *", "*/20 * * * *", "0 0 * * *"):
        whole = fires_until(expr, zone, start, start + timedelta(days=3))
        probe = start
        while probe < start + timedelta(days=3):
            expected = next((t for t in whole if t > probe), None)
            if expected is None:
                break
            assert fires(expr, zone, probe, 1) == [expected], (expr, probe)
            probe += timedelta(minutes=7)


def test_samoa_skipped_a_whole_day() -> None:
    # Pacific/Apia jumped from 2011-12-29 24:00 to 2011-12-31 00:00 (-10 -> +14).
    apia = ZoneInfo("Pacific/Apia")
    after = utc(2011, 12, 28)
    got = walk("0 12 * * *", apia, after, utc(2012, 1, 1))
    assert local(got, apia) == [
        "2011-12-28 12:00-1000",
        "2011-12-29 12:00-1000",
        "2011-12-31 12:00+1400",  # the 30th's noon is shifted by 24 hours onto the 31st's
        "2012-01-01 12:00+1400",
    ]
    assert walk("0 12 * * *", apia, after, utc(2012, 1, 1)) == brute_force(
        "0 12 * * *", apia, after, utc(2012, 1, 1)
    )


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(cron_instants(parse_cron("* * * * *"), ZUTC, datetime(2025, 1, 1)))


def test_parse_is_cached() -> None:
    assert parse_cron("*/5 * * * *") is parse_cron("*/5 * * * *")


# -- a seeded sample of odd zones and odd crons, against the brute force ------------------------

ODD_ZONES = [
    "Asia/Kathmandu",  # +05:45, no DST
    "America/St_Johns",  # -03:30 / -02:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Europe/Dublin",  # "negative" DST in tzdata (winter is the offset change)
    "Africa/Casablanca",  # DST suspended for Ramadan: two changes a year, a month apart
    "America/Havana",  # transitions at midnight
    "Asia/Gaza",
    "Australia/Lord_Howe",
]


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """Instants in ``year`` at which ``zone`` changes its UTC offset."""
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        step = t + timedelta(hours=6)
        if t.astimezone(zone).utcoffset() != step.astimezone(zone).utcoffset():
            low, high = t, step
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                if mid.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high)
        t = step
    return found


def test_random_crons_in_odd_zones_match_brute_force() -> None:
    import random

    rng = random.Random(20250601)
    minute_menu = ["*", "*/7", "0", "30", "15,45", "0-10/5", "59", "*/20"]
    hour_menu = ["*", "0", "1", "2", "0-3", "23", "1,2,3", "*/2", "22-23", "0,12"]
    day_menu = [("*", "*"), ("L", "*"), ("*", "0"), ("1,15", "SAT"), ("*", "6#1")]
    checked = 0
    for name in ODD_ZONES:
        zone = ZoneInfo(name)
        edges = transitions(zone, 2025) or [datetime(2025, 3, 1, tzinfo=UTC)]
        for edge in edges:
            for _ in range(3):
                dom, dow = rng.choice(day_menu)
                expr = f"{rng.choice(minute_menu)} {rng.choice(hour_menu)} {dom} * {dow}"
                start = edge - timedelta(days=1, minutes=rng.randrange(600))
                until = start + timedelta(days=2)
                assert walk(expr, zone, start, until) == brute_force(expr, zone, start, until), (
                    name,
                    expr,
                    start,
                )
                checked += 1
    assert checked >= 40
