"""Commands for the Ray head that ``raypipe serve`` starts for its data directory: ``ray-env``
points Ray's own CLI at it, ``dashboard`` opens its dashboard signed in.

Both read the head's record in ``DATA_DIR/ray`` (``head.json``, the token file) on this
machine; like ``serve`` they need the server's packages (``ray_nodes``), imported when run.
"""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path
from typing import Any

import click

DATA_DIR_OPTION = click.option(
    "--data-dir",
    default=".raypipe",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The data directory `raypipe serve` was started with.",
)


def _head(data_dir: Path) -> Any:
    from ray_nodes.cluster import find_local_head

    head = find_local_head(data_dir / "ray")
    if head is None:
        raise click.ClickException(
            f"no Ray head runs for {data_dir} (raypipe serve --data-dir {data_dir} starts one; "
            "a server given --ray-address uses that cluster instead)"
        )
    return head


def sign_in_hint(data_dir: Path) -> str:
    """The one line ``raypipe serve`` and ``make run`` print about getting into Ray."""
    flag = "" if str(data_dir) == ".raypipe" else f" --data-dir {data_dir}"
    return (
        f"Ray dashboard signed in: raypipe dashboard{flag}; "
        f'Ray CLI (ray status, ray list tasks, ray job submit): eval "$(raypipe ray-env{flag})"'
    )


@click.command("ray-env")
@DATA_DIR_OPTION
def ray_env(data_dir: Path) -> None:
    """Print shell exports that point Ray's CLI at the server's local Ray head.

    \b
    eval "$(raypipe ray-env)"
    ray status; ray list tasks; ray job submit -- python my_script.py

    Sets RAY_ADDRESS, RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (the head's own token,
    not ~/.ray/auth_token) and unsets RAY_AUTH_TOKEN.
    """
    head = _head(data_dir)
    click.echo(head.shell_exports(), nl=False)
    if head.dashboard_url:
        click.echo(f"# Ray dashboard: {head.dashboard_url} (raypipe dashboard signs you in)")


@click.command()
@DATA_DIR_OPTION
@click.option(
    "--open/--no-open",
    "open_browser",
    default=True,
    show_default=True,
    help="Open the sign-in link in the default browser.",
)
@click.option(
    "--valid-for",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="How long the one-time link works.",
)
def dashboard(data_dir: Path, open_browser: bool, valid_for: float) -> None:
    """Open the local Ray head's dashboard, signed in.

    Prints a one-time link on this machine's loopback address that sets the dashboard's
    token cookie (Ray keeps it 30 days) and redirects to the dashboard, opens it in the
    browser unless --no-open, and waits until it is used or expires. Another way in: paste
    the token from DATA_DIR/ray/auth_token into the dashboard's own dialog.
    """
    from ray_nodes.dashboard_login import DashboardLogin

    head = _head(data_dir)
    if not head.dashboard_url:
        raise click.ClickException(f"the Ray head of {data_dir} runs without a dashboard")
    try:
        login = DashboardLogin(head.dashboard_url, head.token_path, valid_for_s=valid_for)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    with login:
        click.echo(f"Ray dashboard: {head.dashboard_url}")
        click.echo(f"Sign in once, within {valid_for:.0f} s: {login.url}", nl=True)
        sys.stdout.flush()
        if open_browser:
            webbrowser.open(login.url)
        try:
            used = login.wait()
        except KeyboardInterrupt:
            used = False
    if not used:
        raise click.ClickException("the sign-in link expired unused")
    click.echo("signed in: the browser keeps the dashboard's cookie for 30 days")


COMMANDS = (ray_env, dashboard)
