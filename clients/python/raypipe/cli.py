"""The ``raypipe`` command line: every command talks to a control plane through the SDK
(``--address`` or ``RAYPIPE_ADDRESS``), except the server's own.

Commands live in ``_cli_pipelines`` (apply, validate, node-types, rollback, pipelines,
versions), ``_cli_runs`` (run, runs), ``_cli_schedules`` (schedules) and ``_cli_graph``
(graph); output formats, error reporting, exit codes and the loading of the server's commands
(``serve``, ``ray-env``, ``dashboard``: ``raypipe.commands`` entry points of the server
distribution) in ``_cli_common``.
"""

from __future__ import annotations

import click

from raypipe import _cli_graph, _cli_pipelines, _cli_runs, _cli_schedules
from raypipe._cli_common import EXIT_CODES_HELP, OUTPUTS, CliState, RaypipeGroup

DEFAULT_ADDRESS = "localhost:50051"


@click.group(
    cls=RaypipeGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--address",
    envvar="RAYPIPE_ADDRESS",
    default=DEFAULT_ADDRESS,
    show_default=True,
    show_envvar=True,
    help="host:port of the control plane.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    default="table",
    show_default=True,
    help="Output format of every command (commands take -o too).",
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds each call to the control plane may take; 0 for no limit.",
)
@click.option(
    "--token",
    envvar="RAYPIPE_TOKEN",
    default="",
    show_envvar=True,
    help="Bearer token for a server with authentication (docs/security.md).",
)
@click.option(
    "--tls-ca",
    envvar="RAYPIPE_TLS_CA",
    default=None,
    show_envvar=True,
    help="TLS: the CA bundle (PEM) of the server's certificate, or 'system' for the system's.",
)
@click.option(
    "--tls-cert",
    envvar="RAYPIPE_TLS_CERT",
    default=None,
    show_envvar=True,
    help="Mutual TLS: this client's certificate (PEM).",
)
@click.option(
    "--tls-key",
    envvar="RAYPIPE_TLS_KEY",
    default=None,
    show_envvar=True,
    help="Mutual TLS: the client certificate's key (PEM).",
)
@click.pass_context
def main(
    ctx: click.Context,
    address: str,
    output: str,
    timeout: float,
    token: str,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """raypipe: ML pipelines on Ray with a gRPC control plane."""
    state = CliState(
        address=address,
        output=output,
        timeout=timeout,
        token=token,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    ctx.obj = state
    ctx.call_on_close(state.close)


for _command in (*_cli_pipelines.COMMANDS, *_cli_runs.COMMANDS, _cli_graph.graph):
    main.add_command(_command)
main.add_command(_cli_schedules.schedules)


if __name__ == "__main__":
    main()
