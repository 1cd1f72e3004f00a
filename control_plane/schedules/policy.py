"""What the firing loop decides for a stored schedule: its fire times (through the pure
logic of :mod:`control_plane.schedules.timing`), the overlap policies, where its cursor goes next
and the backoff of retries. Pure functions: no storage, no clock."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2

from control_plane.schedules.timing import (
    DEFAULT_CATCHUP_WINDOW,
    DEFAULT_MAX_CATCHUP,
    CatchupPolicy,
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    ScheduleTiming,
    Trigger,
    due_fires,
    jittered,
)
from control_plane.storage.schedules import Advance, FireDecision, Occupancy, ScheduleRow
from raypipe.v1 import schedule_pb2

log = logging.getLogger("raypipe.scheduler")

__all__ = [
    "DEFAULT_RETRY_BACKOFF",
    "DuePlan",
    "apply_overlap",
    "overlap_of",
    "parameters_of",
    "plan_due",
    "retry_delay",
    "timing_of",
]

_TICK = timedelta(microseconds=1)
_OVERLAP = schedule_pb2.OverlapPolicy
_CATCHUP = {
    schedule_pb2.CATCHUP_POLICY_UNSPECIFIED: CatchupPolicy.LATEST,
    schedule_pb2.CATCHUP_POLICY_NONE: CatchupPolicy.NONE,
    schedule_pb2.CATCHUP_POLICY_LATEST: CatchupPolicy.LATEST,
    schedule_pb2.CATCHUP_POLICY_ALL: CatchupPolicy.ALL,
}
DEFAULT_RETRY_BACKOFF = timedelta(minutes=1)
_LONGEST_BACKOFF = timedelta(days=365)  # keeps exponential growth clear of overflow


# --- the schedule's configuration, as the pure logic sees it -----------------------------------
def timing_of(config: schedule_pb2.Schedule, schedule_id: str) -> ScheduleTiming:
    """The fire-time view of a stored (or requested) schedule.

    Raises:
        ValueError: The schedule has no trigger, or a timestamp or duration out of range.
    """
    trigger: Trigger
    which = config.WhichOneof("trigger")
    if which == "cron":
        trigger = CronTrigger(config.cron.expression)
    elif which == "interval":
        trigger = IntervalTrigger(config.interval.every.ToTimedelta())
    elif which == "once":
        trigger = OnceTrigger(config.once.at.ToDatetime(tzinfo=UTC))
    else:
        raise ValueError("a schedule needs exactly one trigger: cron, interval or once")
    return ScheduleTiming(
        trigger,
        time_zone=config.time_zone or "UTC",
        start_time=(
            config.start_time.ToDatetime(tzinfo=UTC) if config.HasField("start_time") else None
        ),
        end_time=config.end_time.ToDatetime(tzinfo=UTC) if config.HasField("end_time") else None,
        max_runs=config.max_runs,
        catchup_policy=_CATCHUP.get(config.catchup_policy, CatchupPolicy.LATEST),
        catchup_window=(
            config.catchup_window.ToTimedelta()
            if config.HasField("catchup_window")
            else DEFAULT_CATCHUP_WINDOW
        ),
        jitter=config.jitter.ToTimedelta() if config.HasField("jitter") else None,
        schedule_id=schedule_id,
    )


def overlap_of(config: schedule_pb2.Schedule) -> int:
    """The schedule's overlap policy; UNSPECIFIED means SKIP."""
    return config.overlap_policy or _OVERLAP.OVERLAP_POLICY_SKIP


def parameters_of(config: schedule_pb2.Schedule) -> dict[str, Any]:
    """The schedule's run parameters as plain JSON values."""
    struct = struct_pb2.Struct()
    for key, value in config.parameters.items():
        struct.fields[key].CopyFrom(value)
    return json_format.MessageToDict(struct)


def retry_delay(policy: schedule_pb2.ScheduleRetryPolicy, failed_attempt: int) -> timedelta:
    """How long after attempt ``failed_attempt`` (1 = the first run) failed the next starts:
    ``initial_backoff * multiplier ** (failed_attempt - 1)``, at most ``max_backoff``."""
    initial = (
        policy.initial_backoff.ToTimedelta()
        if policy.HasField("initial_backoff")
        else DEFAULT_RETRY_BACKOFF
    )
    multiplier = policy.backoff_multiplier or 2.0
    cap = policy.max_backoff.ToTimedelta() if policy.HasField("max_backoff") else None
    if cap is None or cap <= timedelta(0):
        cap = _LONGEST_BACKOFF
    seconds = initial.total_seconds() * math.pow(multiplier, max(failed_attempt - 1, 0))
    if not math.isfinite(seconds):
        return min(cap, _LONGEST_BACKOFF)
    return min(timedelta(seconds=min(seconds, _LONGEST_BACKOFF.total_seconds())), cap)


# --- deciding -----------------------------------------------------------------------------------
def apply_overlap(
    policy: int, fires: Sequence[datetime], occupancy: Occupancy
) -> list[FireDecision]:
    """What each fire does, given what already occupies the schedule.

    "Occupied" means an earlier run of the schedule has not ended (or a decided fire has
    not started yet). SKIP skips; BUFFER_ONE keeps one fire waiting and skips later ones;
    BUFFER_ALL keeps every fire waiting, in order; CANCEL_OTHER starts the fire and cancels
    the others (of several fires decided together only the latest starts: each would
    cancel the one before); ALLOW_ALL starts every fire.
    """
    if policy == _OVERLAP.OVERLAP_POLICY_CANCEL_OTHER and fires:
        superseded = [
            FireDecision(t, "skipped", message="superseded by a later fire (CANCEL_OTHER)")
            for t in fires[:-1]
        ]
        return [*superseded, FireDecision(fires[-1], "pending", cancel_others=True)]
    occupied, buffered = occupancy.occupied, occupancy.buffered
    out: list[FireDecision] = []
    for t in fires:
        if policy == _OVERLAP.OVERLAP_POLICY_ALLOW_ALL or not (occupied or buffered):
            out.append(FireDecision(t, "pending"))
            occupied = True
        elif policy == _OVERLAP.OVERLAP_POLICY_BUFFER_ALL or (
            policy == _OVERLAP.OVERLAP_POLICY_BUFFER_ONE and not buffered
        ):
            out.append(FireDecision(t, "buffered"))
            buffered += 1
        else:
            reason = "a run is buffered already (BUFFER_ONE)" if buffered else "(SKIP)"
            out.append(FireDecision(t, "skipped", message=f"an earlier run is going {reason}"))
    return out


@dataclass(frozen=True)
class DuePlan:
    """What the loop records for one due schedule (see :func:`plan_due`)."""

    decisions: list[FireDecision]
    advance: Advance
    started: int  # decisions that start (or buffer) a run, for max_runs


def plan_due(row: ScheduleRow, occupancy: Occupancy, now: datetime) -> DuePlan:
    """Decide a schedule's due fires at ``now`` and where its cursor goes next."""
    timing = timing_of(row.config, row.id)
    anchor = row.create_time
    decision = due_fires(
        timing, row.fired_through, now, anchor=anchor, runs_started=row.runs_started
    )
    decisions = apply_overlap(overlap_of(row.config), decision.fires, occupancy)
    started = sum(d.state in ("pending", "buffered") for d in decisions)
    note = None
    if decision.capped:
        note = (
            f"{now.isoformat()}: catch-up capped at {DEFAULT_MAX_CATCHUP} runs; "
            f"{decision.skipped} older missed fires were skipped"
        )
        log.warning("schedule %s: %s", row.name, note)
    next_fire, next_due = decision.next_fire, decision.next_due
    if next_fire is not None:
        through = next_fire - _TICK  # every earlier nominal time is handled now
    else:
        # Done, or max_runs counted fires that the overlap policy skipped: find the first
        # fire not due yet without max_runs, and keep it if max_runs still allows a run.
        upcoming = due_fires(
            replace(timing, max_runs=0), row.fired_through, now, anchor=anchor
        ).next_fire
        through = upcoming - _TICK if upcoming is not None else now
        runs_after = row.runs_started + started
        if upcoming is not None and (not timing.max_runs or runs_after < timing.max_runs):
            next_fire, next_due = upcoming, jittered(timing, upcoming, anchor=anchor)
    last = max(decision.fires) if decision.fires else row.last_fire_time
    advance = Advance(
        fired_through=max(through, row.fired_through),
        next_fire_time=next_fire,
        next_due_time=next_due,
        last_fire_time=last,
        catchup_note=note,
    )
    return DuePlan(decisions, advance, started)
