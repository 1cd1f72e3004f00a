"""The ``raypipe`` command line: ``serve`` starts the control plane; every other command
talks to one through the SDK (``--address`` or ``RAYPIPE_ADDRESS``).

Commands live in ``_cli_pipelines`` (apply, validate, node-types, rollback, pipelines,
versions), ``_cli_runs`` (run, runs), ``_cli_schedules`` (schedules), ``_cli_graph``
(graph) and ``_cli_local`` (ray-env, dashboard: the local Ray head of a data directory); output formats, error reporting and exit codes in ``_cli_common``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from raypipe import _cli_graph, _cli_local, _cli_pipelines, _cli_runs, _cli_schedules
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
@click.pass_context
def main(ctx: click.Context, address: str, output: str, timeout: float) -> None:
    """raypipe: ML pipelines on Ray with a gRPC control plane."""
    state = CliState(address=address, output=output, timeout=timeout)
    ctx.obj = state
    ctx.call_on_close(state.close)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=50051, show_default=True, type=int, help="Port; 0 picks one.")
@click.option(
    "--data-dir",
    default=".raypipe",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the database, artifacts and the local Ray head.",
)
@click.option("--db", "db_url", default="", help="Database URL (default: SQLite in --data-dir).")
@click.option(
    "--data-root",
    "data_roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory data_loader paths may read from; repeatable (default: the current one).",
)
@click.option(
    "--ray-address",
    default="",
    help="Address of an existing Ray cluster (default: start or reuse a local head).",
)
@click.option(
    "--stop-ray-on-exit",
    is_flag=True,
    help="Stop the local Ray head this server started when it exits (default: leave it, so "
    "runs outlive the server).",
)
@click.option(
    "--mlflow-tracking-uri",
    default="",
    metavar="URI",
    help="MLflow tracking URI every run is recorded to: a tracking server's URL or a database "
    "URI (default: SQLite in --data-dir, sqlite:///DATA_DIR/mlflow.db). See docs/tracking.md.",
)
@click.option(
    "--no-mlflow-tracking",
    is_flag=True,
    help="Record no run in MLflow (a pipeline can also switch it off: tracking.disabled).",
)
@click.option(
    "--keep-outputs",
    type=click.Choice(["on-failure", "always"]),
    default="on-failure",
    show_default=True,
    help="When node outputs go to the artifact store: on-failure keeps those of the nodes that "
    "succeeded once a run fails or is cancelled (what RetryRun reuses); always keeps every "
    "output. Cache-enabled nodes always keep theirs.",
)
@click.option(
    "--health-interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often the gRPC health service checks the database (NOT_SERVING while it does "
    "not answer); 0 checks only at start-up.",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    db_url: str,
    data_roots: tuple[Path, ...],
    ray_address: str,
    stop_ray_on_exit: bool,
    mlflow_tracking_uri: str,
    no_mlflow_tracking: bool,
    keep_outputs: str,
    health_interval: float,
    log_level: str,
) -> None:
    """Start the control plane and serve until SIGTERM or Ctrl-C."""
    from control_plane.server import ServerConfig
    from control_plane.server import serve as run_server
    from control_plane.storage._owner import DatabaseInUseError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    roots = tuple(p.resolve() for p in data_roots) or (Path.cwd(),)
    tracking_uri = ""
    if not no_mlflow_tracking:
        tracking_uri = mlflow_tracking_uri or f"sqlite:///{data_dir.resolve() / 'mlflow.db'}"
    try:
        run_server(
            ServerConfig(
                data_dir=data_dir.resolve(),
                host=host,
                port=port,
                db_url=db_url,
                data_roots=roots,
                ray_address=ray_address,
                stop_ray_on_exit=stop_ray_on_exit,
                tracking_uri=tracking_uri,
                keep_outputs=keep_outputs.replace("-", "_"),
                health_interval=health_interval,
            ),
            sign_in_hint=_cli_local.sign_in_hint(data_dir),
        )
    except DatabaseInUseError as exc:
        raise click.ClickException(str(exc)) from None


for _command in (
    *_cli_pipelines.COMMANDS,
    *_cli_runs.COMMANDS,
    _cli_graph.graph,
    *_cli_local.COMMANDS,
):
    main.add_command(_command)
main.add_command(_cli_schedules.schedules)


if __name__ == "__main__":
    main()
