"""Schedule triggers and their validation: every problem, with its field path, at once."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta

import pytest

import control_plane.schedules.timing as scheduling
from control_plane.schedules.timing import (
    DEFAULT_CATCHUP_WINDOW,
    CatchupPolicy,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    Problem,
    ScheduleTiming,
    load_zone,
    validate,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def problems(timing: ScheduleTiming, now: datetime | None = NOW) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in validate(timing, now=now):
        found.setdefault(problem.field, []).append(problem.description)
    return found


def test_exported_names() -> None:
    assert sorted(scheduling.__all__) == sorted(
        [
            "ALIASES",
            "DEFAULT_BACKFILL_LIMIT",
            "DEFAULT_CATCHUP_WINDOW",
            "DEFAULT_GRACE",
            "DEFAULT_MAX_CATCHUP",
            "MIN_INTERVAL",
            "CatchupDecision",
            "CatchupPolicy",
            "Clock",
            "CronError",
            "CronExpression",
            "CronTrigger",
            "FakeClock",
            "FireList",
            "IntervalTrigger",
            "OnceTrigger",
            "Problem",
            "ScheduleTiming",
            "SystemClock",
            "Trigger",
            "cron_instants",
            "due_fires",
            "fires_between",
            "iter_fires",
            "jitter_offset",
            "jittered",
            "load_zone",
            "next_fire_after",
            "parse_cron",
            "validate",
        ]
    )
    for name in scheduling.__all__:
        assert getattr(scheduling, name) is not None


def test_importing_the_scheduler_does_not_import_ray() -> None:
    code = (
        "import sys, control_plane.schedules.timing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'grpc', 'sqlalchemy'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


def test_defaults_match_the_api() -> None:
    timing = ScheduleTiming(CronTrigger("0 0 * * *"))
    assert timing.time_zone == "UTC"
    assert timing.start_time is None
    assert timing.end_time is None
    assert timing.max_runs == 0
    assert timing.catchup_policy is CatchupPolicy.LATEST
    assert timing.catchup_window == DEFAULT_CATCHUP_WINDOW == HOUR
    assert timing.jitter is None
    assert str(timing.zone) == "UTC"
    # options are keyword-only, values are frozen
    with pytest.raises(TypeError):
        ScheduleTiming(CronTrigger("0 0 * * *"), "UTC")  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        timing.max_runs = 3  # type: ignore[misc]


def test_catchup_policy_names_map_to_the_proto() -> None:
    for proto_name in ("CATCHUP_POLICY_NONE", "CATCHUP_POLICY_LATEST", "CATCHUP_POLICY_ALL"):
        policy = CatchupPolicy[proto_name.removeprefix("CATCHUP_POLICY_")]
        assert policy.value == proto_name.removeprefix("CATCHUP_POLICY_")


@pytest.mark.parametrize(
    "timing",
    [
        ScheduleTiming(CronTrigger("*/15 9-17 * * MON-FRI"), time_zone="Europe/Berlin"),
        ScheduleTiming(CronTrigger("@daily"), time_zone=""),
        ScheduleTiming(CronTrigger("0 0 29 2 *")),
        ScheduleTiming(IntervalTrigger(timedelta(seconds=1))),
        ScheduleTiming(IntervalTrigger(HOUR), start_time=NOW - timedelta(days=30)),
        ScheduleTiming(OnceTrigger(NOW + timedelta(seconds=1))),
        ScheduleTiming(
            CronTrigger("0 3 * * *"),
            time_zone="America/Santiago",
            start_time=NOW,
            end_time=NOW + timedelta(days=2),
            max_runs=5,
            catchup_policy=CatchupPolicy.ALL,
            catchup_window=timedelta(minutes=5),
            jitter=timedelta(hours=48),  # wider than the spacing: allowed, it is clamped
        ),
        ScheduleTiming(CronTrigger("0 0 * * *"), jitter=timedelta(0)),
    ],
)
def test_valid_timings(timing: ScheduleTiming) -> None:
    assert validate(timing, now=NOW) == []


@pytest.mark.parametrize(
    ("timing", "field", "message"),
    [
        (
            ScheduleTiming(CronTrigger("0 0 * * * *")),
            "schedule.cron.expression",
            "croniter would read a 6th field as seconds",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 30 2 *")),
            "schedule.cron.expression",
            "cron expression '0 0 30 2 *': it can never fire: day-of-month 30 does not occur "
            "in February",
        ),
        (
            ScheduleTiming(CronTrigger("0 24 * * *")),
            "schedule.cron.expression",
            "hour field: 24 is out of range",
        ),
        (
            ScheduleTiming(CronTrigger("@reboot")),
            "schedule.cron.expression",
            "@reboot runs when a machine boots",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), time_zone="Europe/Berln"),
            "schedule.time_zone",
            "unknown time zone 'Europe/Berln'; use an IANA name such as 'Europe/Berlin' or "
            "'UTC' (did you mean 'Europe/Berlin'?)",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), time_zone="europe/berlin"),
            "schedule.time_zone",
            "did you mean 'Europe/Berlin'?",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), time_zone="Mars/Olympus_Mons"),
            "schedule.time_zone",
            "unknown time zone 'Mars/Olympus_Mons'",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), time_zone="../../etc/passwd"),
            "schedule.time_zone",
            "unknown time zone",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), time_zone="localtime"),
            "schedule.time_zone",
            "depends on the server's configuration",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), start_time=NOW + HOUR, end_time=NOW + HOUR),
            "schedule.end_time",
            "end_time 2025-06-01T13:00:00Z is not after start_time 2025-06-01T13:00:00Z",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), start_time=NOW, end_time=NOW - HOUR),
            "schedule.end_time",
            "is not after start_time",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), end_time=NOW - HOUR),
            "schedule.end_time",
            "end_time 2025-06-01T11:00:00Z is in the past (now is 2025-06-01T12:00:00Z): the "
            "schedule would never fire",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 29 2 *"), end_time=datetime(2027, 1, 1, tzinfo=UTC)),
            "schedule.end_time",
            "the schedule would never fire: its first fire time from 2025-06-01T12:00:00Z on "
            "is 2028-02-29T00:00:00Z, after end_time 2027-01-01T00:00:00Z",
        ),
        (
            ScheduleTiming(OnceTrigger(NOW - timedelta(seconds=1))),
            "schedule.once.at",
            "2025-06-01T11:59:59Z is in the past (now is 2025-06-01T12:00:00Z): a one-time "
            "trigger must be in the future",
        ),
        (ScheduleTiming(OnceTrigger(NOW)), "schedule.once.at", "is in the past"),
        (
            ScheduleTiming(OnceTrigger(datetime(2030, 1, 1))),
            "schedule.once.at",
            "must be timezone-aware",
        ),
        (
            ScheduleTiming(OnceTrigger(NOW + HOUR), start_time=NOW + 2 * HOUR),
            "schedule.once.at",
            "is before start_time 2025-06-01T14:00:00Z: it would never fire",
        ),
        (
            ScheduleTiming(OnceTrigger(NOW + 3 * HOUR), end_time=NOW + 2 * HOUR),
            "schedule.once.at",
            "is after end_time",
        ),
        (
            ScheduleTiming(IntervalTrigger(timedelta(0))),
            "schedule.interval.every",
            "the interval must be at least 1 second, got 0s",
        ),
        (
            ScheduleTiming(IntervalTrigger(timedelta(seconds=-5))),
            "schedule.interval.every",
            "at least 1 second, got -5s",
        ),
        (
            ScheduleTiming(IntervalTrigger(timedelta(milliseconds=500))),
            "schedule.interval.every",
            "at least 1 second, got 0.5s",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), catchup_window=timedelta(0)),
            "schedule.catchup_window",
            "catchup_window must be positive, got 0s",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), catchup_window=-HOUR),
            "schedule.catchup_window",
            "must be positive",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), jitter=timedelta(seconds=-1)),
            "schedule.jitter",
            "jitter must not be negative, got -1s",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), max_runs=-1),
            "schedule.max_runs",
            "max_runs must be 0 (no limit) or more, got -1",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), start_time=datetime(2025, 1, 1)),
            "schedule.start_time",
            "must be timezone-aware",
        ),
        (
            ScheduleTiming(None),  # type: ignore[arg-type]
            "schedule.trigger",
            "a schedule needs exactly one trigger: cron, interval or once",
        ),
        (
            ScheduleTiming(CronTrigger("0 0 * * *"), catchup_policy="ALL"),  # type: ignore[arg-type]
            "schedule.catchup_policy",
            "NONE, LATEST or ALL",
        ),
    ],
)
def test_refusals(timing: ScheduleTiming, field: str, message: str) -> None:
    found = problems(timing)
    assert list(found) == [field], found
    assert any(message in description for description in found[field]), found


def test_every_problem_is_reported_at_once() -> None:
    timing = ScheduleTiming(
        CronTrigger("60 24 * * *"),
        time_zone="Nowhere/Special",
        start_time=NOW + HOUR,
        end_time=NOW,
        max_runs=-2,
        catchup_window=timedelta(0),
        jitter=-HOUR,
    )
    found = validate(timing, now=NOW)
    assert [p.field for p in found] == [
        "schedule.cron.expression",
        "schedule.cron.expression",
        "schedule.time_zone",
        "schedule.end_time",
        "schedule.max_runs",
        "schedule.catchup_window",
        "schedule.jitter",
    ]
    assert all(isinstance(p, Problem) and p.description for p in found)


def test_prefix_sets_the_field_path() -> None:
    timing = ScheduleTiming(IntervalTrigger(timedelta(0)))
    assert [p.field for p in validate(timing, now=NOW, prefix="update.schedule")] == [
        "update.schedule.interval.every"
    ]


def test_without_now_time_relative_checks_are_skipped() -> None:
    # Re-validating a schedule that already fired: its once time and end_time are past.
    fired = ScheduleTiming(OnceTrigger(NOW - HOUR), end_time=NOW - timedelta(minutes=30))
    assert validate(fired, now=None) == []
    assert problems(fired) == {
        "schedule.once.at": [
            "2025-06-01T11:00:00Z is in the past (now is 2025-06-01T12:00:00Z): a one-time "
            "trigger must be in the future"
        ],
        "schedule.end_time": [
            "end_time 2025-06-01T11:30:00Z is in the past (now is 2025-06-01T12:00:00Z): the "
            "schedule would never fire"
        ],
    }
    # bounds are still checked against each other
    bad = ScheduleTiming(CronTrigger("0 0 29 2 *"), start_time=NOW, end_time=NOW + HOUR)
    assert [p.field for p in validate(bad, now=None)] == ["schedule.end_time"]


def test_never_fires_between_start_and_end() -> None:
    # A daily 03:00 cron between 04:00 and 05:00 the same day never fires.
    start = datetime(2025, 6, 2, 4, tzinfo=UTC)
    timing = ScheduleTiming(CronTrigger("0 3 * * *"), start_time=start, end_time=start + HOUR)
    assert list(problems(timing)) == ["schedule.end_time"]
    # ... but an end_time exactly at a fire time is inclusive, so it fires once.
    ok = ScheduleTiming(
        CronTrigger("0 3 * * *"), start_time=start, end_time=start + timedelta(hours=23)
    )
    assert validate(ok, now=NOW) == []
    # Interval anchored at start_time: the first fire is start_time itself.
    interval = ScheduleTiming(IntervalTrigger(HOUR), start_time=start, end_time=start)
    assert problems(interval) == {
        "schedule.end_time": [
            "end_time 2025-06-02T04:00:00Z is not after start_time 2025-06-02T04:00:00Z"
        ]
    }


def test_interval_created_now_first_fires_one_period_later() -> None:
    timing = ScheduleTiming(IntervalTrigger(timedelta(days=1)), end_time=NOW + HOUR)
    assert problems(timing) == {
        "schedule.end_time": [
            "the schedule would never fire: its first fire time from 2025-06-01T12:00:00Z on "
            "is 2025-06-02T12:00:00Z, after end_time 2025-06-01T13:00:00Z"
        ]
    }


def test_load_zone() -> None:
    assert load_zone("Europe/Berlin").key == "Europe/Berlin"
    assert load_zone("").key == "UTC"
    with pytest.raises(ValueError, match="did you mean 'America/New_York'"):
        load_zone("America/NewYork")


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate(ScheduleTiming(CronTrigger("0 0 * * *")), now=datetime(2025, 1, 1))
