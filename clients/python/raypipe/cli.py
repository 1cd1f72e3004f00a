"""The ``raypipe`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """raypipe: ML pipelines on Ray with a gRPC control plane."""


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
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    db_url: str,
    data_roots: tuple[Path, ...],
    ray_address: str,
    log_level: str,
) -> None:
    """Start the control plane and serve until SIGTERM or Ctrl-C."""
    from control_plane.server import ServerConfig
    from control_plane.server import serve as run_server

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    roots = tuple(p.resolve() for p in data_roots) or (Path.cwd(),)
    run_server(
        ServerConfig(
            data_dir=data_dir.resolve(),
            host=host,
            port=port,
            db_url=db_url,
            data_roots=roots,
            ray_address=ray_address,
        )
    )


if __name__ == "__main__":
    main()
