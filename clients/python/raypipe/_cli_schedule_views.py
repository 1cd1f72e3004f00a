"""How ``raypipe schedules …`` shows schedules: the table, the details of one, and the texts
of a schedule's target, trigger, state, policies and next fire."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2, json_format
from rich.console import RenderableType
from rich.text import Text

from raypipe._cli_common import (
    details,
    human_seconds,
    new_table,
    row,
    when,
)
from raypipe._names import pipeline_id, version_number
from raypipe.v1 import schedule_pb2

STATE_COLORS = {"ACTIVE": "green", "PAUSED": "yellow", "ENDED": "dim"}


def schedule_id(s: schedule_pb2.Schedule) -> str:
    return s.name.removeprefix("schedules/")


def target_text(s: schedule_pb2.Schedule) -> str:
    """``churn`` (its default version at each fire) or ``churn v3`` (pinned)."""
    if s.pipeline_version:
        return f"{pipeline_id(s.pipeline_version)} v{version_number(s.pipeline_version)}"
    return pipeline_id(s.pipeline) if s.pipeline else ""


def trigger_text(s: schedule_pb2.Schedule) -> str:
    kind = s.WhichOneof("trigger")
    if kind == "cron":
        return f"cron {s.cron.expression}"
    if kind == "interval":
        return f"every {_duration_text(s.interval.every)}"
    if kind == "once":
        return f"once {when(s.once.at)}"
    return ""


def state_text(s: schedule_pb2.Schedule) -> Text:
    """ACTIVE, PAUSED, or ENDED when it will not fire again."""
    if s.paused:
        state = "PAUSED"
    elif s.next_fire_time.seconds or s.next_fire_time.nanos:
        state = "ACTIVE"
    else:
        state = "ENDED"
    return Text(state, style=STATE_COLORS[state])


def _duration_text(d: duration_pb2.Duration) -> str:
    """``15m``, ``1h30m``, ``36h``, ``1.5s``: as one would type it to --interval."""
    seconds = d.ToTimedelta().total_seconds()
    if seconds < 60 or not seconds.is_integer():
        return human_seconds(seconds) or "0s"
    whole = int(seconds)
    parts = [(whole // 3600, "h"), (whole % 3600 // 60, "m"), (whole % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def _policy(value: int, enum: Any, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower() if value else ""


def _retry_text(r: schedule_pb2.ScheduleRetryPolicy) -> str:
    if not r.max_retries:
        return ""
    text = f"{r.max_retries} retries"
    if r.HasField("initial_backoff"):
        text += f", first after {_duration_text(r.initial_backoff)}"
    return text


def schedules_table(items: list[schedule_pb2.Schedule]) -> RenderableType:
    t = new_table("SCHEDULE", "PIPELINE", "TRIGGER", "TIME ZONE", "STATE", "NEXT FIRE", "LAST FIRE")
    for s in items:
        t.add_row(
            *row(
                schedule_id(s),
                target_text(s),
                trigger_text(s),
                s.time_zone or "UTC",
                state_text(s),
                when(s.next_fire_time),
                when(s.last_fire_time),
            )
        )
    return t


def schedule_details(s: schedule_pb2.Schedule) -> RenderableType:
    params = ", ".join(f"{k}={_value(v)}" for k, v in sorted(s.parameters.items()))
    return details(
        [
            ("name", s.name),
            ("display name", s.display_name),
            ("pipeline", s.pipeline),
            ("version", s.pipeline_version),
            ("trigger", trigger_text(s)),
            ("time zone", s.time_zone or "UTC"),
            ("state", state_text(s)),
            ("pause note", s.pause_note),
            ("parameters", params),
            ("start", when(s.start_time)),
            ("end", when(s.end_time)),
            ("max runs", s.max_runs or ""),
            ("overlap", _policy(s.overlap_policy, schedule_pb2.OverlapPolicy, "OVERLAP_POLICY_")),
            ("catch-up", _policy(s.catchup_policy, schedule_pb2.CatchupPolicy, "CATCHUP_POLICY_")),
            (
                "catch-up window",
                _duration_text(s.catchup_window) if s.HasField("catchup_window") else "",
            ),
            ("catch-up note", s.catchup_note),
            ("jitter", _duration_text(s.jitter) if s.HasField("jitter") else ""),
            ("retry", _retry_text(s.retry)),
            ("next fire", when(s.next_fire_time)),
            ("last fire", when(s.last_fire_time)),
            ("runs started", s.runs_started),
            ("created", when(s.create_time)),
            ("created by", s.creator),
            ("updated", when(s.update_time)),
            ("updated by", s.updater),
            ("etag", s.etag),
        ]
    )


def _value(value: Any) -> str:
    return json_format.MessageToJson(value, indent=None)
