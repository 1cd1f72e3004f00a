"""Next fire, fires in a range, catch-up decisions, jitter, and the injectable clock."""

from __future__ import annotations

import itertools
import statistics
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from control_plane.schedules.timing import (
    DEFAULT_GRACE,
    CatchupPolicy,
    Clock,
    CronTrigger,
    FakeClock,
    IntervalTrigger,
    OnceTrigger,
    ScheduleTiming,
    SystemClock,
    due_fires,
    fires_between,
    iter_fires,
    jitter_offset,
    jittered,
    next_fire_after,
)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def cron(expr: str, **options: object) -> ScheduleTiming:
    return ScheduleTiming(CronTrigger(expr), **options)  # type: ignore[arg-type]


# -- next_fire_after ---------------------------------------------------------------------------


def test_next_fire_is_strictly_after() -> None:
    hourly = cron("0 * * * *")
    assert next_fire_after(hourly, at(1)) == at(2)
    assert next_fire_after(hourly, at(1) - timedelta(microseconds=1)) == at(1)
    # any aware datetime is accepted; results are UTC
    berlin = datetime(2025, 6, 1, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    result = next_fire_after(hourly, berlin)
    assert result == at(2)
    assert result is not None
    assert result.tzinfo is UTC


def test_cron_in_a_time_zone() -> None:
    berlin = cron("30 2 * * *", time_zone="Europe/Berlin")
    assert next_fire_after(berlin, at()) == at(0, 30)  # 02:30 CEST
    # spring-forward day: 02:30 does not exist, fires at 03:30 CEST = 01:30Z
    march = datetime(2025, 3, 29, 12, tzinfo=UTC)
    assert next_fire_after(berlin, march) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)


def test_start_time_is_inclusive() -> None:
    timing = cron("0 * * * *", start_time=at(5))
    assert next_fire_after(timing, at(1)) == at(5)
    assert next_fire_after(timing, at(5)) == at(6)
    between = cron("0 * * * *", start_time=at(5, 1))
    assert next_fire_after(between, at(1)) == at(6)


def test_end_time_is_inclusive() -> None:
    timing = cron("0 * * * *", end_time=at(5))
    assert next_fire_after(timing, at(4, 30)) == at(5)
    assert next_fire_after(timing, at(5)) is None
    assert list(iter_fires(timing, at(2))) == [at(3), at(4), at(5)]


def test_max_runs() -> None:
    timing = cron("0 * * * *", max_runs=3)
    assert next_fire_after(timing, at(), runs_started=2) == at(1)
    assert next_fire_after(timing, at(), runs_started=3) is None
    unlimited = cron("0 * * * *", max_runs=0)
    assert next_fire_after(unlimited, at(), runs_started=10**9) == at(1)


def test_once() -> None:
    timing = ScheduleTiming(OnceTrigger(at(3)))
    assert next_fire_after(timing, at(1)) == at(3)
    assert next_fire_after(timing, at(3)) is None
    assert list(iter_fires(timing, at())) == [at(3)]
    outside = ScheduleTiming(OnceTrigger(at(3)), end_time=at(2))
    assert next_fire_after(outside, at()) is None


def test_interval_is_anchored_at_start_time() -> None:
    timing = ScheduleTiming(IntervalTrigger(timedelta(minutes=90)), start_time=at(10))
    assert next_fire_after(timing, at(9)) == at(10)  # a future start_time fires itself
    assert next_fire_after(timing, at(10)) == at(11, 30)
    assert next_fire_after(timing, at(12)) == at(13)
    # the anchor argument does not move a schedule that has a start_time
    assert next_fire_after(timing, at(12), anchor=at(0, 7)) == at(13)


def test_interval_without_start_time_is_anchored_at_creation() -> None:
    created = at(0, 0, 17.25)
    timing = ScheduleTiming(IntervalTrigger(timedelta(seconds=7)))
    assert next_fire_after(timing, created, anchor=created) == created + timedelta(seconds=7)
    # exact arithmetic: no drift after a million periods
    far = created + 10**6 * timedelta(seconds=7)
    assert next_fire_after(timing, far - timedelta(microseconds=1), anchor=created) == far
    with pytest.raises(ValueError, match="needs anchor"):
        next_fire_after(timing, created)


def test_interval_ignores_time_zones_and_dst() -> None:
    start = datetime(2025, 11, 2, 4, tzinfo=UTC)  # 00:00 EDT, the fall-back day
    timing = ScheduleTiming(IntervalTrigger(HOUR), time_zone="America/New_York", start_time=start)
    got = list(itertools.islice(iter_fires(timing, start - MINUTE), 6))
    assert got == [start + i * HOUR for i in range(6)]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_after(cron("* * * * *"), datetime(2025, 1, 1))


# -- fires_between (backfill) ------------------------------------------------------------------


def test_fires_between_excludes_start_and_includes_end() -> None:
    result = fires_between(cron("0 * * * *"), at(1), at(4))
    assert result.fires == (at(2), at(3), at(4))
    assert result.truncated is False


def test_fires_between_limit_and_paging() -> None:
    timing = cron("*/5 * * * *")
    first = fires_between(timing, at(), at(24), limit=100)
    assert len(first.fires) == 100
    assert first.truncated is True
    collected = list(first.fires)
    while True:
        page = fires_between(timing, collected[-1], at(24), limit=100)
        collected.extend(page.fires)
        if not page.truncated:
            break
    assert len(collected) == 288
    assert collected == [at(0, 5 * i) for i in range(1, 289)]
    exact = fires_between(timing, at(), at(1), limit=12)
    assert len(exact.fires) == 12
    assert exact.truncated is False
    with pytest.raises(ValueError, match="limit"):
        fires_between(timing, at(), at(1), limit=0)


def test_fires_between_bounds() -> None:
    timing = cron("0 * * * *", start_time=at(3), end_time=at(5))
    assert fires_between(timing, at(), at(10)).fires == (at(3), at(4), at(5))
    assert fires_between(timing, at(), at(10), bounded=False).fires == tuple(
        at(h) for h in range(1, 11)
    )
    # unbounded, an interval's grid extends before its start_time
    interval = ScheduleTiming(IntervalTrigger(HOUR), start_time=at(5, 30))
    assert fires_between(interval, at(2), at(6), bounded=False).fires == (
        at(2, 30),
        at(3, 30),
        at(4, 30),
        at(5, 30),
    )
    assert fires_between(interval, at(2), at(6)).fires == (at(5, 30),)


def test_backfill_across_dst_follows_the_policy() -> None:
    timing = cron("30 2 * * *", time_zone="Europe/Berlin")
    result = fires_between(
        timing, datetime(2025, 3, 28, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    )
    berlin = ZoneInfo("Europe/Berlin")
    assert [t.astimezone(berlin).strftime("%m-%d %H:%M") for t in result.fires] == [
        "03-28 02:30",
        "03-29 02:30",
        "03-30 03:30",
        "03-31 02:30",
    ]


# -- due_fires (catch-up) ----------------------------------------------------------------------


def test_on_time_fire() -> None:
    decision = due_fires(cron("0 * * * *"), at(1), at(2))
    assert decision.fires == (at(2),)
    assert decision.skipped == 0
    assert decision.capped is False
    assert decision.next_fire == at(3)
    assert decision.next_due == at(3)


def test_nothing_due_yet() -> None:
    decision = due_fires(cron("0 * * * *"), at(1), at(1, 59, 59))
    assert decision.fires == ()
    assert decision.skipped == 0
    assert decision.next_fire == at(2)


def test_latest_runs_the_latest_missed_fire() -> None:
    decision = due_fires(cron("0 * * * *"), at(0), at(5, 10))
    assert decision.fires == (at(5),)
    assert decision.skipped == 4
    assert decision.next_fire == at(6)
    # however old: the catch-up window does not apply to LATEST
    daily = cron("0 9 * * *", catchup_window=MINUTE)
    decision = due_fires(daily, at(9), at(9) + 3 * DAY + 5 * HOUR)
    assert decision.fires == (at(9) + 3 * DAY,)
    assert decision.skipped == 2


def test_none_runs_only_a_fire_that_is_due_now() -> None:
    timing = cron("0 * * * *", catchup_policy=CatchupPolicy.NONE)
    late = due_fires(timing, at(0), at(5, 0, 30))
    assert late.fires == (at(5),)
    assert late.skipped == 4
    edge = due_fires(timing, at(0), at(5) + DEFAULT_GRACE)
    assert edge.fires == (at(5),)
    missed = due_fires(timing, at(0), at(5) + DEFAULT_GRACE + timedelta(microseconds=1))
    assert missed.fires == ()
    assert missed.skipped == 5
    assert missed.next_fire == at(6)
    tight = due_fires(timing, at(4), at(5, 0, 10), grace=timedelta(seconds=5))
    assert tight.fires == ()


def test_all_runs_every_missed_fire_within_the_window() -> None:
    timing = cron("*/10 * * * *", catchup_policy=CatchupPolicy.ALL)
    decision = due_fires(timing, at(0), at(2, 5))
    # missed 00:10 .. 02:00 (12); the window is the last hour: 01:10 .. 02:00
    assert decision.fires == (*(at(1, m) for m in (10, 20, 30, 40, 50)), at(2))
    assert decision.skipped == 6
    assert decision.capped is False
    assert decision.next_fire == at(2, 10)
    # a fire exactly at the window's start is inside it
    edge = due_fires(timing, at(0), at(2, 10))
    assert edge.fires[0] == at(1, 10)


def test_all_never_storms() -> None:
    timing = cron("* * * * *", catchup_policy=CatchupPolicy.ALL, catchup_window=timedelta(hours=3))
    decision = due_fires(timing, at(0), at(24))
    assert len(decision.fires) == 100  # DEFAULT_MAX_CATCHUP
    assert decision.capped is True
    assert decision.fires[-1] == at(24)
    assert decision.fires[0] == at(24) - 99 * MINUTE  # the most recent ones
    assert decision.skipped == 24 * 60 - 100
    small = due_fires(timing, at(23), at(24), max_catchup=10)
    assert small.fires == tuple(at(24) - i * MINUTE for i in range(9, -1, -1))
    assert small.capped is True
    assert small.skipped == 50
    # exactly at the cap is not capped
    fits = due_fires(timing, at(23, 50), at(24), max_catchup=10)
    assert len(fits.fires) == 10
    assert fits.capped is False
    assert fits.skipped == 0


def test_max_runs_limits_catch_up() -> None:
    timing = cron("*/10 * * * *", catchup_policy=CatchupPolicy.ALL, max_runs=3)
    decision = due_fires(timing, at(0), at(0, 45), runs_started=2)
    assert decision.fires == (at(0, 10),)  # the earliest the limit still allows
    assert decision.skipped == 3
    assert decision.next_fire is None
    assert decision.next_due is None
    done = due_fires(timing, at(0), at(0, 45), runs_started=3)
    assert done.fires == ()
    assert done.skipped == 4
    assert done.next_fire is None


def test_end_time_and_once_finish_the_schedule() -> None:
    ending = cron("0 * * * *", end_time=at(3))
    decision = due_fires(ending, at(0), at(10))
    assert decision.fires == (at(3),)
    assert decision.skipped == 2
    assert decision.next_fire is None
    once = ScheduleTiming(OnceTrigger(at(2)))
    decision = due_fires(once, None, at(7), anchor=at(0))
    assert decision.fires == (at(2),)
    assert decision.next_fire is None
    assert due_fires(once, at(2), at(8)).fires == ()


def test_without_last_fire_the_anchor_is_the_start() -> None:
    timing = cron("0 * * * *")
    assert due_fires(timing, None, at(2, 30), anchor=at(1, 30)).fires == (at(2),)
    with pytest.raises(ValueError, match="last_fire or anchor"):
        due_fires(timing, None, at(2))
    interval = ScheduleTiming(IntervalTrigger(timedelta(minutes=25)))
    decision = due_fires(interval, None, at(1), anchor=at(0, 3))
    assert decision.fires == (at(0, 53),)
    assert decision.skipped == 1
    assert decision.next_fire == at(1, 18)


def test_resume_does_not_run_fires_missed_while_paused() -> None:
    # Paused at 01:30, resumed at 05:20: the loop passes the resume time as last_fire.
    decision = due_fires(cron("0 * * * *"), at(5, 20), at(5, 20))
    assert decision.fires == ()
    assert decision.skipped == 0
    assert decision.next_fire == at(6)


def test_long_downtime_is_counted() -> None:
    decision = due_fires(cron("* * * * *"), at(0), at(0) + 30 * DAY)
    assert decision.fires == (at(0) + 30 * DAY,)
    assert decision.skipped == 30 * 24 * 60 - 1


def test_jitter_delays_when_a_fire_is_due() -> None:
    timing = cron("0 * * * *", jitter=timedelta(minutes=10), schedule_id="nightly-train")
    offset = jitter_offset("nightly-train", at(2), timedelta(minutes=10), at(3))
    assert timedelta(0) < offset < timedelta(minutes=10)
    before = due_fires(timing, at(1), at(2) + offset - timedelta(microseconds=1))
    assert before.fires == ()
    assert before.skipped == 0
    assert before.next_fire == at(2)
    assert before.next_due == at(2) + offset == jittered(timing, at(2))
    due = due_fires(timing, at(1), at(2) + offset)
    assert due.fires == (at(2),)
    assert due.next_due == jittered(timing, at(3))
    # NONE measures lateness from the jittered start, not the nominal time
    none = cron(
        "0 * * * *",
        jitter=timedelta(minutes=10),
        schedule_id="nightly-train",
        catchup_policy=CatchupPolicy.NONE,
    )
    assert due_fires(none, at(1), at(2) + offset + timedelta(seconds=30)).fires == (at(2),)


# -- jitter ------------------------------------------------------------------------------------


def test_jitter_is_deterministic_and_pinned() -> None:
    # Replicas and releases must agree on every offset: pin the hash.
    nominal = datetime(2025, 6, 1, 2, tzinfo=UTC)
    assert jitter_offset("nightly-train", nominal, timedelta(minutes=10), None) == timedelta(
        minutes=8, seconds=18, microseconds=756773
    )
    same_instant = nominal.astimezone(ZoneInfo("Asia/Tokyo"))
    assert jitter_offset("nightly-train", same_instant, timedelta(minutes=10), None) == (
        jitter_offset("nightly-train", nominal, timedelta(minutes=10), None)
    )
    others = {jitter_offset(f"s{i}", nominal, HOUR, None) for i in range(50)}
    assert len(others) == 50


def test_jitter_bounds() -> None:
    every_minute = cron("* * * * *")
    nominals = list(itertools.islice(iter_fires(every_minute, T0), 2000))
    for jitter in (timedelta(seconds=20), HOUR):
        offsets = [jitter_offset("s", n, jitter, nxt) for n, nxt in itertools.pairwise(nominals)]
        bound = min(jitter, MINUTE)
        assert all(timedelta(0) <= o < bound for o in offsets)
        # spread over the whole range, not bunched
        mean = statistics.fmean(o / bound for o in offsets)
        assert 0.45 < mean < 0.55
    assert jitter_offset("s", T0, timedelta(0), None) == timedelta(0)
    assert jitter_offset("s", T0, -HOUR, None) == timedelta(0)
    assert jitter_offset("s", T0, HOUR, T0 + timedelta(microseconds=1)) == timedelta(0)
    assert jitter_offset("s", T0, timedelta(microseconds=1), None) == timedelta(0)


def test_jittered_fires_stay_in_order_and_before_the_next_nominal() -> None:
    timing = cron("*/5 * * * *", jitter=timedelta(days=1), schedule_id="wide")
    nominals = list(itertools.islice(iter_fires(timing, T0), 500))
    due = [jittered(timing, n) for n in nominals]
    for nominal, start, nxt in zip(nominals, due, nominals[1:], strict=False):
        assert nominal <= start < nxt
    assert all(a < b for a, b in itertools.pairwise(due))
    assert jittered(cron("* * * * *"), T0) == T0  # no jitter


# -- clocks ------------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(T0)
    assert clock.now() == T0
    assert clock.advance(HOUR) == at(1)
    clock.set(at(2))
    assert clock.now() == at(2)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(at(1))
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-MINUTE)
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2025, 1, 1))
    assert isinstance(clock, Clock)
    assert isinstance(SystemClock(), Clock)


def test_fake_clock_sleep_wakes_on_advance_or_event() -> None:
    clock = FakeClock(T0)
    wake = threading.Event()
    results: list[bool] = []
    sleeper = threading.Thread(target=lambda: results.append(clock.sleep_until(at(1), wake)))
    sleeper.start()
    assert clock.wait_for_sleepers(1) == [at(1)]
    clock.advance(30 * MINUTE)
    assert clock.sleepers == [at(1)]  # not there yet
    clock.advance(30 * MINUTE)
    sleeper.join(5)
    assert results == [False]
    assert clock.sleepers == []

    sleeper = threading.Thread(target=lambda: results.append(clock.sleep_until(None, wake)))
    sleeper.start()
    clock.wait_for_sleepers(1)
    wake.set()
    sleeper.join(5)
    assert results == [False, True]
    with pytest.raises(TimeoutError):
        clock.wait_for_sleepers(1, timeout=0.01)


def test_fake_clock_auto_advance_walks_a_year_of_fires() -> None:
    # The firing loop's shape, single-threaded: decide, record, sleep until next due.
    clock = FakeClock(T0, auto_advance=True)
    wake = threading.Event()
    timing = cron("0 * * * *", time_zone="Europe/Berlin", jitter=timedelta(minutes=5))
    last: datetime | None = None
    started: list[datetime] = []
    lateness: list[timedelta] = []
    while len(started) < 365 * 24:
        decision = due_fires(timing, last, clock.now(), anchor=T0)
        assert decision.skipped == 0
        for fire in decision.fires:
            started.append(fire)
            lateness.append(clock.now() - jittered(timing, fire))
            last = fire
        assert clock.sleep_until(decision.next_due, wake) is False
    assert started[0] == at(1)
    assert started[-1] == T0 + 365 * DAY
    assert all(b - a == HOUR for a, b in itertools.pairwise(started))
    assert set(lateness) == {timedelta(0)}


def test_system_clock() -> None:
    clock = SystemClock(max_slice=timedelta(milliseconds=20))
    now = clock.now()
    assert now.tzinfo is UTC
    wake = threading.Event()
    assert clock.sleep_until(now - MINUTE, wake) is False
    assert clock.sleep_until(clock.now() + timedelta(milliseconds=50), wake) is False
    assert clock.now() >= now + timedelta(milliseconds=50)
    wake.set()
    assert clock.sleep_until(clock.now() + HOUR, wake) is True
    assert clock.sleep_until(None, wake) is True
    with pytest.raises(ValueError, match="max_slice"):
        SystemClock(max_slice=timedelta(0))
