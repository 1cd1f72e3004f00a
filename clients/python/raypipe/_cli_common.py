"""What every ``raypipe`` command shares: the connection, output formats, errors, exit codes."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from raypipe._client import Client
from raypipe._errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RaypipeError,
    RPCError,
    RunFailedError,
    SpecError,
    UnavailableError,
    UnimplementedError,
)
from raypipe._rpc import state_name
from raypipe._specfile import SpecDumper, field_line, message_to_dict

# Exit codes scripts can rely on; the CLI's help epilog lists them.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_NOT_FOUND = 3
EXIT_INVALID = 4
EXIT_PRECONDITION = 5
EXIT_UNAVAILABLE = 6
EXIT_RUN_FAILED = 7
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  any other error
  2  usage error (a bad option or argument)
  3  not found (no such pipeline, version, run or schedule)
  4  invalid argument (a bad spec, file or value; each problem is printed)
  5  failed precondition (e.g. a pipeline still in use, a run that ended)
  6  control plane unavailable or too slow (check --address)
  7  the run ended FAILED or CANCELLED (run --watch, runs watch)
"""

OUTPUTS = ("table", "json", "yaml")
T = TypeVar("T")


@dataclass
class CliState:
    """Global options, and the client made from them on first use."""

    address: str
    output: str
    timeout: float
    token: str = ""
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.address,
                timeout=self.timeout or None,
                token=self.token,
                tls_ca=self.tls_ca,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


pass_state = click.make_pass_decorator(CliState)


def output_option(fn: Callable[..., T]) -> Callable[..., T]:
    """``-o/--output`` on a command too, so it may follow the command as in kubectl."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default=None,
        help="Output format; default: the global -o (table).",
    )(fn)


def fmt(state: CliState, output: str | None) -> str:
    return output or state.output


# --- errors -------------------------------------------------------------------------------


def exit_code(error: BaseException) -> int:
    """The documented exit code of an error."""
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, InvalidArgumentError | SpecError):
        return EXIT_INVALID
    if isinstance(error, FailedPreconditionError):
        return EXIT_PRECONDITION
    if isinstance(error, UnavailableError | DeadlineExceededError):
        return EXIT_UNAVAILABLE
    if isinstance(error, RunFailedError):
        return EXIT_RUN_FAILED
    return EXIT_ERROR


def error_lines(error: BaseException, spec_file: Path | None = None) -> list[str]:
    """``error: <reason>: <message>``, then one ``  field: description`` per violation;
    with ``spec_file``, violations of the spec also say where in the file they are."""
    if isinstance(error, RPCError):
        lines = [f"error: {error.reason or error.code.name}: {error.message}"]
        for v in error.field_violations:
            line = field_line(spec_file, v.field) if spec_file is not None else 0
            where = f" ({spec_file}:{line})" if line else ""
            lines.append(f"  {v.field}: {v.description}{where}")
        if isinstance(error, UnavailableError) and not error.reason:
            lines[0] += " (is a control plane running there? see --address)"
        if isinstance(error, UnimplementedError) and not error.reason:
            lines[0] += " (the control plane does not serve this call: older, or without runs?)"
        return lines
    if isinstance(error, SpecError):
        return [f"error: INVALID_SPEC_FILE: {error}"]
    if isinstance(error, RunFailedError):
        return [f"error: RUN_{state_name(error.run.state)}: {error}"]
    reason = getattr(error, "reason", None) or type(error).__name__
    return [f"error: {reason}: {error}"]


def fail(error: BaseException, spec_file: Path | None = None) -> NoReturn:
    """Print an error the documented way and exit with its code."""
    for line in error_lines(error, spec_file):
        click.echo(line, err=True)
    raise click.exceptions.Exit(exit_code(error))


#: Where the server distribution declares its commands (``serve``, ``ray-env``, ``dashboard``).
COMMANDS_ENTRY_POINTS = "raypipe.commands"
#: The server's commands, named in help and errors also where the server is not installed.
SERVER_COMMANDS = {
    "serve": "Start the control plane (needs the server: pip install raypipe-server).",
    "ray-env": "Print exports that point Ray's CLI at the server's local Ray head (server).",
    "dashboard": "Open the server's local Ray dashboard, signed in (server).",
}
SERVER_PACKAGE_HINT = (
    "is a command of the raypipe server, which is not installed here: install it with "
    "`pip install raypipe-server` (in a clone of the repository: `pip install .` at its root, "
    "or `make install`); this SDK alone is a client of a running control plane"
)


@functools.cache
def _plugin_commands() -> dict[str, Any]:
    """The ``raypipe.commands`` entry points of installed distributions, by name (scanned
    once: click asks for the commands several times per invocation)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMANDS_ENTRY_POINTS)}


class RaypipeGroup(click.Group):
    """The top-level group: turns every SDK error into its line on stderr and exit code, and
    adds the server's commands from their entry points (loaded only when run)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugin_commands(), *SERVER_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        plugin = _plugin_commands().get(cmd_name)
        if plugin is not None:
            command = plugin.load()
            if isinstance(command, click.Command):
                return command
        if cmd_name in SERVER_COMMANDS:
            return _missing_server_command(cmd_name)
        return None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RaypipeError as e:
            fail(e)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _missing_server_command(name: str) -> click.Command:
    """A stand-in that says which package brings ``name`` and exits 1."""

    @click.command(
        name,
        help=SERVER_COMMANDS[name],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def missing() -> None:
        raise click.ClickException(f"raypipe {name} {SERVER_PACKAGE_HINT}")

    return missing


# --- output -------------------------------------------------------------------------------


def console() -> Console:
    """A console on the current stdout; wide when it is not a terminal, so that piped
    tables are not cut."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=max(out.width, 160))
    return out


def plain(value: Any) -> Any:
    if isinstance(value, Message):
        return message_to_dict(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def emit(
    output: str, data: Any, table: Callable[[], RenderableType | Iterable[RenderableType]]
) -> None:
    """Print ``data`` (messages, lists, dicts) as JSON or YAML, or what ``table`` renders."""
    if output == "json":
        click.echo(json.dumps(plain(data), indent=2, ensure_ascii=False))
    elif output == "yaml":
        click.echo(
            yaml.dump(plain(data), Dumper=SpecDumper, sort_keys=False, allow_unicode=True), nl=False
        )
    else:
        rendered = table()
        show(*(rendered if isinstance(rendered, list | tuple) else [rendered]))


def show(*renderables: RenderableType) -> None:
    """Print rich renderables; off a terminal as plain lines without trailing blanks."""
    out = console()
    if out.is_terminal:
        for item in renderables:
            out.print(item)
        return
    with out.capture() as captured:
        for item in renderables:
            out.print(item)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


def new_table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def row(*cells: Any) -> list[Text]:
    """Cells as Text, so that user content such as ``[bold]`` is never taken for markup."""
    return [c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in cells]


def details(pairs: Sequence[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key/value table for one resource."""
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in pairs:
        if value not in ("", None):
            t.add_row(*row(key, value))
    return t


def when(ts: timestamp_pb2.Timestamp) -> str:
    """A timestamp in local time, or empty when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    local = ts.ToDatetime(tzinfo=dt.UTC).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S")


def seconds_between(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp | None) -> float:
    """Seconds from ``start`` to ``end`` (or to now when ``end`` is None or unset)."""
    if not start.seconds and not start.nanos:
        return 0.0
    begin = start.ToDatetime(tzinfo=dt.UTC)
    if end is not None and (end.seconds or end.nanos):
        finish = end.ToDatetime(tzinfo=dt.UTC)
    else:
        finish = dt.datetime.now(dt.UTC)
    return max(0.0, (finish - begin).total_seconds())


def human_seconds(seconds: float) -> str:
    if seconds <= 0:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if size.is_integer() else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"  # pragma: no cover


def parse_pairs(values: Iterable[str], what: str, *, json_values: bool) -> dict[str, Any]:
    """``key=value`` options; with ``json_values`` a value that parses as JSON is that value
    (``lr=0.1`` is a number, ``tags=["a"]`` a list), anything else a string."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=what)
        if json_values:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out
