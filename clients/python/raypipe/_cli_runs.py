"""``raypipe run`` and ``raypipe runs …``, with the live progress display of a run's nodes."""

from __future__ import annotations

import time
from typing import Any

import click
from google.protobuf import json_format
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from raypipe._builder import duration
from raypipe._cli_common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    CliState,
    console,
    details,
    emit,
    error_lines,
    fmt,
    human_bytes,
    human_seconds,
    new_table,
    output_option,
    parse_pairs,
    pass_state,
    row,
    seconds_between,
    show,
    when,
)
from raypipe._client import Client
from raypipe._errors import RaypipeError, RunFailedError
from raypipe._names import pipeline_id, version_name, version_number
from raypipe._rpc import TERMINAL_STATES, state_name
from raypipe._run_methods import last_attempt
from raypipe._schedules import timestamp
from raypipe.v1 import node_log_pb2, run_pb2, run_service_pb2

RUN_COLORS = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLING": "magenta",
    "CANCELLED": "magenta",
}
NODE_COLORS = {**RUN_COLORS, "SKIPPED": "dim", "CACHED": "green"}


def node_state(value: int) -> str:
    return run_pb2.NodeExecution.State.Name(value).removeprefix("STATE_")  # type: ignore[arg-type]


def styled(state: str, colors: dict[str, str]) -> Text:
    return Text(state, style=colors.get(state, ""))


# --- the live display ----------------------------------------------------------------------


class Progress:
    """What the live display shows: the run as of its latest event, and each node's type."""

    def __init__(self, run: run_pb2.Run, types: dict[str, str]) -> None:
        self.run = run
        self.types = types
        self.last_message = ""

    def update(self, response: run_service_pb2.WatchRunResponse) -> None:
        event = response.event
        if response.HasField("run"):
            self.run = response.run
        elif event.node_id:  # events between the server's full records: apply them here
            for node in self.run.nodes:
                if node.node_id == event.node_id:
                    if event.node_state:
                        node.state = event.node_state
                    node.metrics.update(event.metrics)
        if response.event.message:
            self.last_message = response.event.message

    def render(self) -> RenderableType:
        run = self.run
        state = state_name(run.state)
        head = Text.assemble(
            (run.name, "bold"),
            "  ",
            styled(state, RUN_COLORS),
            f"  {human_seconds(seconds_between(_began(run), run.end_time))}",
            f"  {run.pipeline_version}",
        )
        t = new_table("NODE", "TYPE", "STATE", "ATTEMPT", "DURATION", "RAY NODE", "DETAIL")
        for n in run.nodes:
            detail = n.error.message if n.error.message else "; ".join(n.notes)
            if n.cached_from:
                detail = f"cached from {n.cached_from}"
            t.add_row(
                *row(
                    n.node_id,
                    self.types.get(n.node_id, ""),
                    styled(node_state(n.state), NODE_COLORS),
                    n.attempt or "",
                    human_seconds(seconds_between(n.start_time, n.end_time))
                    if n.start_time.seconds
                    else "",
                    n.ray_node_address or "",
                    detail.splitlines()[0] if detail else "",
                )
            )
        parts: list[RenderableType] = [head, t]
        if self.last_message and run.state not in TERMINAL_STATES:
            parts.append(Text(self.last_message, style="dim"))
        return Group(*parts)


def _began(run: run_pb2.Run) -> Any:
    return run.start_time if run.HasField("start_time") else run.create_time


def metrics_table(run: run_pb2.Run) -> RenderableType | None:
    """The metrics each node measured, one row per metric; None when there are none."""
    t = new_table("NODE", "METRIC", "VALUE")
    any_rows = False
    for n in run.nodes:
        for i, (key, value) in enumerate(sorted(n.metrics.items())):
            t.add_row(*row(n.node_id if i == 0 else "", key, metric_text(key, value)))
            any_rows = True
    return t if any_rows else None


def metric_text(name: str, value: float) -> str:
    """A metric for people: sizes in binary units, times with a unit, counts as integers."""
    if name.endswith("_bytes"):
        return human_bytes(int(value))
    if name.endswith("_seconds"):
        return human_seconds(value) or "0s"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def node_types_of(client: Client, run: run_pb2.Run) -> dict[str, str]:
    """Each node's type, from the run's version; empty if the version cannot be read."""
    try:
        version = client.get_pipeline_version(run.pipeline_version)
    except RaypipeError:
        return {}
    return {n.id: n.type for n in version.spec.nodes}


def follow(state: CliState, run: run_pb2.Run | str, output: str) -> int:
    """Follow a run to its end (live with ``table``), print the outcome, return the exit code."""
    client = state.client()
    if output != "table":
        final = client.wait_run(run, raise_on_failure=False)
        emit(output, final, lambda: "")
        return _report(final, quiet=True)
    initial = run if isinstance(run, run_pb2.Run) else client.get_run(run)
    progress = Progress(initial, node_types_of(client, initial))
    out = console()
    if not out.is_terminal:
        # No live display off a terminal (a pipe, a CI log): the final state, once.
        final = client.wait_run(initial.name, raise_on_failure=False)
        progress.run = final
        show(progress.render())
        return _report(final)
    with Live(console=out, get_renderable=progress.render, refresh_per_second=4) as live:
        try:
            final = client.wait_run(initial.name, raise_on_failure=False, on_event=progress.update)
        except KeyboardInterrupt:
            live.stop()
            click.echo(
                f"stopped watching; {initial.name} goes on "
                f"(raypipe runs cancel {initial.name.removeprefix('runs/')} to stop it)",
                err=True,
            )
            raise
        progress.run = final
        live.refresh()
    return _report(final)


def _report(run: run_pb2.Run, *, quiet: bool = False) -> int:
    """Print the metrics and the outcome (unless ``quiet``); the exit code of the run."""
    if not quiet:
        took = human_seconds(seconds_between(_began(run), run.end_time)) or "0s"
        outcome = Text.assemble(
            f"{run.name} ", styled(state_name(run.state), RUN_COLORS), f" in {took}"
        )
        metrics = metrics_table(run)
        show(*([Text(""), Text("metrics", style="bold"), metrics] if metrics else []), outcome)
    if run.state == run_pb2.Run.STATE_SUCCEEDED:
        return EXIT_OK
    for line in error_lines(RunFailedError(run)):
        click.echo(line, err=True)
    return EXIT_RUN_FAILED


# --- commands -------------------------------------------------------------------------------


@click.command("run")
@click.argument("pipeline")
@click.option(
    "--version", "version", metavar="N", help="Version number or name; default: the default."
)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Run parameter; the value is JSON if it parses (0.1, true, [1,2]), else a string.",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Run label.")
@click.option("--display-name", default="", help="Name of the run for displays.")
@click.option("--watch", "-w", is_flag=True, help="Follow the run live until it ends.")
@output_option
@pass_state
def run_command(
    state: CliState,
    pipeline: str,
    version: str | None,
    params: tuple[str, ...],
    labels: tuple[str, ...],
    display_name: str,
    watch: bool,
    output: str | None,
) -> None:
    """Start a run of PIPELINE (its default version unless --version).

    With --watch, show every node's progress live and end with the metrics; the exit code is
    0 if the run succeeded and 7 otherwise.
    """
    client = state.client()
    run = client.create_run(
        pipeline,
        version=_version(pipeline, version),
        parameters=parse_pairs(params, "-p", json_values=True),
        labels=parse_pairs(labels, "--label", json_values=False),
        display_name=display_name,
    )
    out = fmt(state, output)
    if watch:
        raise click.exceptions.Exit(follow(state, run, out))
    if out != "table":
        emit(out, run, lambda: "")
    else:
        click.echo(f"started {run.name} ({run.pipeline_version})")


def _version(pipeline: str, version: str | None) -> str | None:
    if version is None:
        return None
    if not version.isdigit() and not version.startswith("pipelines/"):
        raise click.BadParameter(f"{version!r} is not a version number", param_hint="--version")
    return version_name(pipeline, version)


@click.group()
def runs() -> None:
    """List, show, watch, cancel and retry runs."""


@runs.command("list")
@click.option("--pipeline", default=None, help="Only runs of this pipeline.")
@click.option("--version", default=None, metavar="N", help="Only runs of this version.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(
        [k.removeprefix("STATE_").lower() for k in run_pb2.Run.State.keys()[1:]],
        case_sensitive=False,
    ),
    help="Only runs in this state; repeatable.",
)
@click.option("--schedule", default=None, metavar="ID", help="Only runs started by this schedule.")
@click.option("--limit", default=50, show_default=True, help="Show at most this many; 0: all.")
@output_option
@pass_state
def runs_list(
    state: CliState,
    pipeline: str | None,
    version: str | None,
    states: tuple[str, ...],
    schedule: str | None,
    limit: int,
    output: str | None,
) -> None:
    """List runs, newest first.

    The options narrow the list; given together, a run must match every one of them.
    """
    if version is not None and pipeline is None and not version.startswith("pipelines/"):
        raise click.BadParameter("give --pipeline with a version number", param_hint="--version")
    items: list[run_pb2.Run] = []
    listing = state.client().list_runs(
        pipeline=pipeline,
        version=_version(pipeline or "", version),
        states=states,
        schedule=schedule or "",
        page_size=min(limit, 1000) if limit else 0,
    )
    for item in listing:
        if limit and len(items) >= limit:
            break
        items.append(item)

    def table() -> RenderableType:
        t = new_table("RUN", "PIPELINE", "VERSION", "STATE", "CREATED", "DURATION", "NAME")
        for r in items:
            t.add_row(
                *row(
                    r.name.removeprefix("runs/"),
                    pipeline_id(r.pipeline) if r.pipeline else "",
                    version_number(r.pipeline_version) or "",
                    styled(state_name(r.state), RUN_COLORS),
                    when(r.create_time),
                    human_seconds(seconds_between(r.start_time, r.end_time))
                    if r.start_time.seconds
                    else "",
                    r.display_name,
                )
            )
        return t

    emit(fmt(state, output), items, table)


@runs.command("get")
@click.argument("run")
@output_option
@pass_state
def runs_get(state: CliState, run: str, output: str | None) -> None:
    """Show RUN (an id or runs/ID) with its nodes and metrics."""
    client = state.client()
    r = client.get_run(run)

    def tables() -> list[RenderableType]:
        params = ", ".join(f"{k}={_value_text(v)}" for k, v in sorted(r.parameters.items()))
        head = details(
            [
                ("name", r.name),
                ("display name", r.display_name),
                ("version", r.pipeline_version),
                ("state", styled(state_name(r.state), RUN_COLORS)),
                ("parameters", params),
                ("created", when(r.create_time)),
                ("created by", r.creator),
                ("started", when(r.start_time)),
                ("ended", when(r.end_time)),
                ("retry of", r.retry_of),
                ("schedule", r.schedule),
                ("error", _error_text(r.error)),
                *_failed_node_logs(r),
                *_tracking_rows(r.tracking),
            ]
        )
        progress = Progress(r, node_types_of(client, r))
        parts: list[RenderableType] = [head, progress.render()]
        metrics = metrics_table(r)
        if metrics is not None:
            parts.append(metrics)
        return parts

    emit(fmt(state, output), r, tables)


@runs.command("cancel")
@click.argument("run")
@output_option
@pass_state
def runs_cancel(state: CliState, run: str, output: str | None) -> None:
    """Cancel RUN; running nodes are stopped, pending ones never start."""
    r = state.client().cancel_run(run)
    out = fmt(state, output)
    if out != "table":
        emit(out, r, lambda: "")
    else:
        click.echo(f"{r.name}: {state_name(r.state)}")


@runs.command("retry")
@click.argument("run")
@click.option("--watch", "-w", is_flag=True, help="Follow the new run live until it ends.")
@output_option
@pass_state
def runs_retry(state: CliState, run: str, watch: bool, output: str | None) -> None:
    """Start a new run of an ended RUN that reuses the outputs of its succeeded nodes."""
    r = state.client().retry_run(run)
    out = fmt(state, output)
    if watch:
        raise click.exceptions.Exit(follow(state, r, out))
    if out != "table":
        emit(out, r, lambda: "")
    else:
        click.echo(f"started {r.name} (retry of {r.retry_of})")


@runs.command("watch")
@click.argument("run")
@output_option
@pass_state
def runs_watch(state: CliState, run: str, output: str | None) -> None:
    """Follow RUN live until it ends; exit code 0 if it succeeded, 7 otherwise."""
    raise click.exceptions.Exit(follow(state, run, fmt(state, output)))


def _value_text(value: Any) -> str:
    return json_format.MessageToJson(value, indent=None)


def _tracking_rows(tracking: run_pb2.TrackingInfo) -> list[tuple[str, str]]:
    """The run's MLflow record, for ``runs get`` (nothing when tracking is off)."""
    if not (tracking.run_id or tracking.problem):
        return []
    return [
        ("mlflow run", tracking.run_id or "(not created yet)"),
        ("mlflow url", tracking.url),
        ("mlflow models", ", ".join(_model_texts(tracking))),
        ("registered", ", ".join(tracking.registered_models)),
        ("tracking problem", tracking.problem),
    ]


def _model_texts(tracking: run_pb2.TrackingInfo) -> list[str]:
    """``node: models:/m-...`` per logged model (bare URIs from servers that name no node)."""
    if tracking.models:
        return [f"{m.node_id}: {m.model_uri}" for m in tracking.models]
    return list(tracking.model_uris)


def _failed_node_logs(run: run_pb2.Run) -> list[tuple[str, str]]:
    """For each failed node other than the one the run's error names: its last log lines."""
    rows = []
    for node in run.nodes:
        if node.error.log_tail and node.node_id != run.error.node_id:
            rows.append((f"{node.node_id} failed", _error_text(node.error)))
    return rows


def _error_text(error: run_pb2.ExecutionError) -> str:
    if not error.message:
        return ""
    where = f"{error.node_id}: " if error.node_id else ""
    kind = f"{error.type}: " if error.type else ""
    text = f"{where}{kind}{error.message}"
    if error.log_tail:  # what the node wrote last, before the error
        text += "\nlast lines of its log:\n" + "\n".join(f"  {line}" for line in error.log_tail)
    return text


COMMANDS = (run_command, runs)


_STREAM_NAMES = {
    node_log_pb2.LogLine.STREAM_STDOUT: "stdout",
    node_log_pb2.LogLine.STREAM_STDERR: "stderr",
    node_log_pb2.LogLine.STREAM_LOGGING: "logging",
    node_log_pb2.LogLine.STREAM_RAYPIPE: "raypipe",
}


def log_line_text(line: node_log_pb2.LogLine, *, timestamps: bool = False) -> str:
    """One log line as `runs logs` prints it: logging records with their level and logger."""
    text = line.text
    if line.stream == node_log_pb2.LogLine.STREAM_LOGGING:
        text = f"{line.level} {line.logger}: {text}"
    if timestamps:
        stamp = line.time.ToDatetime().isoformat(timespec="milliseconds") + "Z"
        text = f"{stamp} {_STREAM_NAMES.get(line.stream, '?'):<7} {text}"
    return text


def _since(value: str) -> int:
    """``--since``: a duration ago or an RFC 3339 time, as Unix nanoseconds."""
    try:
        ago = duration(value)
    except ValueError:
        try:
            return timestamp(value).ToNanoseconds()
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither a duration (10m, 1h30m) nor an RFC 3339 time",
                param_hint="--since",
            ) from None
    return time.time_ns() - ago.ToNanoseconds()


@runs.command("logs")
@click.argument("run")
@click.argument("node")
@click.option(
    "--attempt", type=click.IntRange(min=1), default=None, help="The attempt; default: the last."
)
@click.option(
    "--follow", "-f", is_flag=True, help="Print lines as the node writes them, until it ends."
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, help="Start at this line (from 0)."
)
@click.option(
    "--since",
    default=None,
    metavar="DURATION|TIME",
    help="Only lines written since then: a duration ago (10m, 1h30m) or an RFC 3339 time.",
)
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its time and stream.")
@output_option
@pass_state
def runs_logs(
    state: CliState,
    run: str,
    node: str,
    attempt: int | None,
    follow: bool,
    offset: int,
    since: str | None,
    timestamps: bool,
    output: str | None,
) -> None:
    """Print the log of NODE in RUN: its stdout, stderr and logging records, in order.

    \b
    raypipe runs logs 3f2a... train                 the last attempt, whole
    raypipe runs logs 3f2a... train --attempt 1 -t  the first, with times and streams
    raypipe runs logs 3f2a... train -f              follow it live until the node ends
    raypipe runs logs 3f2a... train -o json         one JSON object per line
    raypipe runs logs 3f2a... train --since 10m     what it wrote in the last ten minutes
    """
    client = state.client()
    out = fmt(state, output)
    start = _since(since) if since else None

    def show_line(line: node_log_pb2.LogLine) -> None:
        if start is not None and line.time.ToNanoseconds() < start:
            return
        if out == "table":
            click.echo(log_line_text(line, timestamps=timestamps))
        else:
            click.echo(
                json_format.MessageToJson(line, indent=None, preserving_proto_field_name=True)
            )

    if follow:
        for line in client.follow_node_logs(run, node, attempt=attempt, offset=offset):
            show_line(line)
        return
    if attempt is None:
        attempt = last_attempt(client.get_run(run), node)
    cut = 0
    while True:
        page = client.get_node_logs(run, node, attempt=attempt, offset=offset)
        for line in page.lines:
            show_line(line)
        offset, cut = page.next_offset, page.cut_lines
        if page.complete or not page.lines:
            break
    if cut and out == "table":
        click.echo(f"({cut} lines were cut from the middle of this log)", err=True)
