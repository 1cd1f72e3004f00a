"""The scheduler's fire-time logic: triggers, validation, DST-aware fire times, catch-up,
jitter and an injectable clock. Pure: it imports neither ray nor gRPC, and no function
reads the time itself.

The DST policy is in :mod:`control_plane.schedules.timing.cron`; bounds, catch-up and jitter
semantics are in :mod:`control_plane.schedules.timing.firetimes` and
:mod:`control_plane.schedules.timing.triggers`.
"""

from __future__ import annotations

from control_plane.schedules.timing.checks import Problem, validate
from control_plane.schedules.timing.clock import Clock, FakeClock, SystemClock
from control_plane.schedules.timing.cron import (
    ALIASES,
    CronError,
    CronExpression,
    cron_instants,
    parse_cron,
)
from control_plane.schedules.timing.firetimes import (
    DEFAULT_BACKFILL_LIMIT,
    DEFAULT_GRACE,
    DEFAULT_MAX_CATCHUP,
    CatchupDecision,
    FireList,
    due_fires,
    fires_between,
    iter_fires,
    jitter_offset,
    jittered,
    next_fire_after,
)
from control_plane.schedules.timing.triggers import (
    DEFAULT_CATCHUP_WINDOW,
    MIN_INTERVAL,
    CatchupPolicy,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    ScheduleTiming,
    Trigger,
    load_zone,
)

__all__ = [
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
