"""``raypipe schedules …``: schedules that start runs of a pipeline from a cron expression, a
fixed interval or once; pause, resume, trigger and backfill them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from itertools import islice
from typing import Any, TypeVar

import click
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from rich.console import RenderableType
from rich.text import Text

from raypipe._builder import duration
from raypipe._cli_common import (
    CliState,
    emit,
    fmt,
    new_table,
    output_option,
    parse_pairs,
    pass_state,
    row,
    when,
)
from raypipe._cli_runs import follow
from raypipe._cli_schedule_views import (
    schedule_details,
    schedule_id,
    schedules_table,
)
from raypipe._names import PIPELINES, pipeline_id, version_name
from raypipe._rpc import state_name
from raypipe.v1 import schedule_pb2

F = TypeVar("F", bound=Callable[..., Any])

OVERLAP_POLICIES = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")
CATCHUP_POLICIES = ("none", "latest", "all")

# update --clear NAME: the create_schedule keyword each name clears.
CLEARABLE = {
    "start": "start_time",
    "end": "end_time",
    "max-runs": "max_runs",
    "parameters": "parameters",
    "catchup-window": "catchup_window",
    "jitter": "jitter",
    "retry": "retry",
    "display-name": "display_name",
}


# --- option values --------------------------------------------------------------------------


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """An instant with its zone: ``2026-12-01T08:00:00Z`` or ``…+01:00``."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time such as 2026-12-01T08:00:00Z", ctx=ctx, param=param
        ) from None
    if parsed.tzinfo is None:
        raise click.BadParameter(
            f"{value!r} has no zone: end it with Z (UTC) or an offset such as +01:00",
            ctx=ctx,
            param=param,
        )
    return parsed


def _duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> duration_pb2.Duration | None:
    if value is None:
        return None
    try:
        return duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def schedule_options(*, update: bool) -> Callable[[F], F]:
    """The options that set a schedule's fields, shared by ``create`` and ``update``; every
    default is None, so that ``update`` changes only what is given."""
    options = [
        click.option("--cron", metavar="EXPR", help="Fire on cron EXPR ('0 6 * * 1-5')."),
        click.option(
            "--interval",
            metavar="DURATION",
            callback=_duration,
            help="Fire every DURATION of elapsed time ('15m', '1h30m').",
        ),
        click.option(
            "--at", metavar="TIME", callback=_time, help="Fire once at TIME (RFC 3339, with zone)."
        ),
        click.option(
            "--time-zone", metavar="ZONE", help="IANA zone of the cron expression; default UTC."
        ),
        click.option("--start", metavar="TIME", callback=_time, help="No fire before TIME."),
        click.option("--end", metavar="TIME", callback=_time, help="No fire after TIME."),
        click.option(
            "--version",
            metavar="N",
            help="Pin version N; default: each fire runs the default version of its time.",
        ),
        click.option(
            "-p",
            "--param",
            "params",
            multiple=True,
            metavar="KEY=VALUE",
            help="Run parameter of every run; JSON if it parses, else a string"
            + ("; replaces all parameters." if update else "."),
        ),
        click.option(
            "--overlap-policy",
            type=click.Choice(OVERLAP_POLICIES, case_sensitive=False),
            help="What a fire does while an earlier run still goes; default skip.",
        ),
        click.option(
            "--catchup-policy",
            type=click.Choice(CATCHUP_POLICIES, case_sensitive=False),
            help="What happens to fires missed while the server was down; default latest.",
        ),
        click.option(
            "--catchup-window",
            metavar="DURATION",
            callback=_duration,
            help="How far back --catchup-policy all reaches; default 1h.",
        ),
        click.option(
            "--jitter",
            metavar="DURATION",
            callback=_duration,
            help="Delay each fire by a fixed amount below DURATION, to spread load.",
        ),
        click.option(
            "--max-runs",
            metavar="N",
            type=click.IntRange(min=0),
            help="Stop after N runs; 0: no limit.",
        ),
        click.option(
            "--retries",
            metavar="N",
            type=click.IntRange(min=0),
            help="Retry a failed scheduled run up to N times.",
        ),
        click.option(
            "--retry-backoff",
            metavar="DURATION",
            callback=_duration,
            help="Delay before the first retry; default 1m, doubling.",
        ),
        click.option("--display-name", help="Name for displays."),
    ]
    if update:
        options += [
            click.option("--pipeline", metavar="ID", help="Run this pipeline instead."),
            click.option(
                "--clear",
                "clear",
                multiple=True,
                type=click.Choice(sorted(CLEARABLE)),
                help="Unset this field; repeatable.",
            ),
            click.option("--etag", default="", help="Refuse (exit 1) if the schedule changed."),
        ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def schedule_fields(values: dict[str, Any]) -> dict[str, Any]:
    """``create_schedule`` keywords from the options given (None means not given)."""
    triggers = [f"--{k}" for k in ("cron", "interval", "at") if values.get(k) is not None]
    if len(triggers) > 1:
        raise click.UsageError(f"give one trigger, not {' and '.join(triggers)}")
    names = {
        "cron": "cron",
        "interval": "every",
        "at": "at",
        "time_zone": "time_zone",
        "start": "start_time",
        "end": "end_time",
        "overlap_policy": "overlap_policy",
        "catchup_policy": "catchup_policy",
        "catchup_window": "catchup_window",
        "jitter": "jitter",
        "max_runs": "max_runs",
        "display_name": "display_name",
    }
    fields = {names[k]: v for k, v in values.items() if k in names and v is not None}
    if values.get("params"):
        fields["parameters"] = parse_pairs(values["params"], "-p", json_values=True)
    retry: dict[str, Any] = {}
    if values.get("retries") is not None:
        retry["max_retries"] = values["retries"]
    if values.get("retry_backoff") is not None:
        retry["initial_backoff"] = values["retry_backoff"]
    if retry:
        fields["retry"] = retry
    return fields


def _version(version: str, pipeline: str) -> str:
    if not version.isdigit() and not version.startswith(PIPELINES):
        raise click.BadParameter(f"{version!r} is not a version number", param_hint="--version")
    return version_name(pipeline, version)


def _said(state: CliState, output: str | None, message: Message, line: str) -> None:
    """What a command changed or started: the whole message with -o json/yaml, else one
    line."""
    out = fmt(state, output)
    if out != "table":
        emit(out, message, lambda: "")
    else:
        click.echo(line)


def _next_fire(s: schedule_pb2.Schedule) -> str:
    return f"next fire {when(s.next_fire_time)}" if s.next_fire_time.seconds else "no next fire"


# --- commands -------------------------------------------------------------------------------

note_option = click.option("--note", default="", help="Why; shown by schedules get.")


@click.group()
def schedules() -> None:
    """Create, list, change, pause, resume, trigger and backfill schedules.

    A schedule starts runs of a pipeline on a cron expression (in a time zone), every fixed
    interval, or once; exactly once per fire time, across server restarts and replicas.
    """


@schedules.command("create")
@click.argument("pipeline")
@click.option(
    "--id", "new_id", default="", metavar="ID", help="The schedule's id; default: generated."
)
@schedule_options(update=False)
@click.option("--paused", is_flag=True, help="Create it paused: it fires once resumed.")
@output_option
@pass_state
def schedules_create(
    state: CliState, pipeline: str, new_id: str, paused: bool, output: str | None, **values: Any
) -> None:
    """Create a schedule that runs PIPELINE, with one of --cron, --interval or --at.

    \b
    raypipe schedules create churn --id nightly --cron '0 3 * * *' --time-zone Europe/Berlin
    raypipe schedules create churn --interval 15m -p lr=0.05 --overlap-policy skip
    raypipe schedules create churn --at 2026-12-24T18:00:00Z
    """
    fields = schedule_fields(values)
    if values["version"] is not None:
        fields["version"] = _version(values["version"], pipeline)
    s = state.client().create_schedule(pipeline, schedule_id=new_id, paused=paused, **fields)
    status = "paused" if s.paused else _next_fire(s)
    _said(state, output, s, f"created schedule {schedule_id(s)} ({status})")


@schedules.command("list")
@click.option("--pipeline", default=None, help="Only schedules of this pipeline.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many; 0: all.")
@output_option
@pass_state
def schedules_list(state: CliState, pipeline: str | None, limit: int, output: str | None) -> None:
    """List schedules, newest first."""
    listing = state.client().list_schedules(
        pipeline=pipeline, page_size=min(limit, 1000) if limit else 0
    )
    items = list(islice(listing, limit) if limit else listing)
    emit(fmt(state, output), items, lambda: schedules_table(items))


@schedules.command("get")
@click.argument("schedule")
@output_option
@pass_state
def schedules_get(state: CliState, schedule: str, output: str | None) -> None:
    """Show SCHEDULE (an id or schedules/ID)."""
    s = state.client().get_schedule(schedule)
    emit(fmt(state, output), s, lambda: schedule_details(s))


@schedules.command("update")
@click.argument("schedule")
@schedule_options(update=True)
@output_option
@pass_state
def schedules_update(
    state: CliState,
    schedule: str,
    pipeline: str | None,
    clear: tuple[str, ...],
    etag: str,
    output: str | None,
    **values: Any,
) -> None:
    """Change the fields of SCHEDULE given as options, and only those.

    A new trigger replaces the old one, -p all parameters, --retries/--retry-backoff the
    whole retry policy; --clear unsets a field; the next fire time is recomputed from now.
    """
    client = state.client()
    changes = schedule_fields(values)
    for name in clear:
        if CLEARABLE[name] in changes:
            raise click.UsageError(f"--clear {name} and a new value for it: give one")
        changes[CLEARABLE[name]] = None
    if pipeline is not None:
        changes["pipeline"] = pipeline
    if values["version"] is not None:
        base = pipeline
        if base is None and not values["version"].startswith(PIPELINES):
            current = client.get_schedule(schedule)  # a bare number: of the current pipeline
            base = pipeline_id(current.pipeline or current.pipeline_version)
        changes["version"] = _version(values["version"], base or "")
    if not changes:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    s = client.update_schedule(schedule, etag=etag, **changes)
    _said(state, output, s, f"updated schedule {schedule_id(s)} ({_next_fire(s)})")


@schedules.command("delete")
@click.argument("schedule")
@click.option("--etag", default="", help="Refuse if the schedule changed since.")
@pass_state
def schedules_delete(state: CliState, schedule: str, etag: str) -> None:
    """Delete SCHEDULE; the runs it started are kept."""
    state.client().delete_schedule(schedule, etag=etag)
    click.echo(f"deleted schedule {schedule.removeprefix('schedules/')}")


@schedules.command("pause")
@click.argument("schedule")
@note_option
@output_option
@pass_state
def schedules_pause(state: CliState, schedule: str, note: str, output: str | None) -> None:
    """Stop SCHEDULE firing until resumed; fires missed meanwhile are not run later."""
    s = state.client().pause_schedule(schedule, note=note)
    _said(state, output, s, f"paused schedule {schedule_id(s)}")


@schedules.command("resume")
@click.argument("schedule")
@note_option
@output_option
@pass_state
def schedules_resume(state: CliState, schedule: str, note: str, output: str | None) -> None:
    """Fire SCHEDULE again, from its next fire time after now."""
    s = state.client().resume_schedule(schedule, note=note)
    _said(state, output, s, f"resumed schedule {schedule_id(s)} ({_next_fire(s)})")


@schedules.command("trigger")
@click.argument("schedule")
@click.option("--watch", "-w", is_flag=True, help="Follow the run live until it ends.")
@output_option
@pass_state
def schedules_trigger(state: CliState, schedule: str, watch: bool, output: str | None) -> None:
    """Start one run of SCHEDULE now, also while it is paused.

    With --watch, the exit code is 0 if the run succeeded and 7 otherwise.
    """
    run = state.client().trigger_schedule(schedule)
    if watch:
        raise click.exceptions.Exit(follow(state, run, fmt(state, output)))
    _said(state, output, run, f"started {run.name} ({run.pipeline_version})")


@schedules.command("backfill")
@click.argument("schedule")
@click.option(
    "--start", required=True, metavar="TIME", callback=_time, help="From TIME, exclusive."
)
@click.option(
    "--end",
    required=True,
    metavar="TIME",
    callback=_time,
    help="To TIME, inclusive; not later than now.",
)
@output_option
@pass_state
def schedules_backfill(
    state: CliState, schedule: str, start: dt.datetime, end: dt.datetime, output: str | None
) -> None:
    """Start a run of SCHEDULE for each of its fire times in (--start, --end].

    Fire times that had a run already are not run twice; the overlap policy may skip some.
    """
    response = state.client().backfill_schedule(schedule, start_time=start, end_time=end)

    def table() -> list[RenderableType]:
        t = new_table("RUN", "SCHEDULED", "STATE")
        for r in response.runs:
            t.add_row(
                *row(r.name.removeprefix("runs/"), when(r.scheduled_time), state_name(r.state))
            )
        summary = Text(
            f"{len(response.runs)} started, {len(response.existing)} had a run already, "
            f"{len(response.skipped)} skipped by the overlap policy"
        )
        return [t, summary] if response.runs else [summary]

    emit(fmt(state, output), response, table)


COMMANDS = (schedules,)
