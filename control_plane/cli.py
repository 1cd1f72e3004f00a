"""The server's commands of the ``raypipe`` CLI: ``serve`` starts the control plane;
``ray-env`` and ``dashboard`` get into the Ray head it started for its data directory.

They come with the server distribution (``raypipe-server``, this repository's root project),
which declares them as ``raypipe.commands`` entry points; the SDK's CLI (``raypipe.cli``) finds
them there, so the client never imports the server. Without the server installed, ``raypipe
serve`` says which package to install.
"""

from __future__ import annotations

import logging
import sys
import webbrowser
from pathlib import Path
from typing import Any

import click

from ray_nodes.cluster import find_local_head
from ray_nodes.dashboard_login import DashboardLogin
from ray_nodes.logs import DEFAULT_MAX_BYTES as DEFAULT_LOG_MAX_BYTES

__all__ = ["dashboard", "ray_env", "serve", "sign_in_hint"]


@click.command()
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
    "--artifact-root",
    default="",
    metavar="URL",
    help="Where node outputs and logs are stored: a directory every Ray node can reach, or an "
    "fsspec URL such as s3://bucket/raypipe (default: artifacts/ in --data-dir). Replicas "
    "must share it.",
)
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
    "--log-max-bytes",
    type=click.IntRange(min=0),
    default=DEFAULT_LOG_MAX_BYTES,
    show_default=True,
    metavar="BYTES",
    help="The text each node attempt's log keeps: its first and last halves, the cut marked "
    "(docs/logs.md); 0 captures no log.",
)
@click.option(
    "--http-port",
    type=click.IntRange(min=0, max=65535),
    default=8280,
    show_default=True,
    help="Port of the HTTP API: every service over the Connect protocol (docs/http.md); "
    "0 picks a free one.",
)
@click.option("--no-http", is_flag=True, help="Serve no HTTP port, gRPC only.")
@click.option(
    "--ui-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="The web UI's built files, served on the HTTP port (default: the repository's "
    "clients/web/dist, which make install builds; docs/http.md).",
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
@click.option(
    "--shutdown-linger-seconds",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM: how long the port stays open after health turns NOT_SERVING (new calls "
    "get UNAVAILABLE, which clients retry elsewhere) before the server stops; at least your "
    "load balancer's health-check interval.",
)
@click.option(
    "--autoscaler-wait-seconds",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="On a Ray cluster with an autoscaler: how long a node that no Ray node can hold "
    "waits for one to be added before it fails (sooner when the autoscaler reports that it "
    "can add none; without an autoscaler it fails at once).",
)
@click.option(
    "--recording-lease-seconds",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Replicas on one PostgreSQL: how long a replica's lease on recording a run lasts "
    "unless renewed; a dead replica's runs are taken over within 1.25 times this "
    "(docs/deploy.md).",
)
@click.option(
    "--auth-tokens",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Bearer tokens: a YAML file of their SHA-256 hashes with names and roles (raypipe "
    "tokens create; docs/security.md); re-read when it changes.",
)
@click.option(
    "--auth-jwks-url",
    default="",
    metavar="URL",
    help="Accept JWTs signed by a key of this JWKS (an OIDC provider's jwks_uri); needs "
    "--auth-issuer and --auth-audience.",
)
@click.option("--auth-issuer", default="", metavar="ISS", help="The JWTs' required iss.")
@click.option("--auth-audience", default="", metavar="AUD", help="The JWTs' required aud.")
@click.option(
    "--auth-role-claim",
    default="role",
    show_default=True,
    metavar="CLAIM",
    help="The JWT claim holding the role (viewer, operator, editor, admin; or a list).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="TLS on both ports: the server's certificate chain (PEM); needs --tls-key. Reloaded "
    "on SIGHUP.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="The TLS certificate's private key (PEM).",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Mutual TLS: clients must present a certificate of this CA (PEM); its subject "
    "alternative name or common name names the caller.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    default=16 * 1024 * 1024,
    show_default=True,
    metavar="BYTES",
    help="The largest request message either port reads; larger ones are RESOURCE_EXHAUSTED.",
)
@click.option(
    "--max-streams-per-caller",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    metavar="N",
    help="WatchRun and WatchNodeLogs streams one caller may hold open at once; 0: no cap.",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Serve a non-loopback --host without authentication (only behind something that "
    "authenticates callers itself).",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    db_url: str,
    artifact_root: str,
    data_roots: tuple[Path, ...],
    ray_address: str,
    stop_ray_on_exit: bool,
    mlflow_tracking_uri: str,
    no_mlflow_tracking: bool,
    keep_outputs: str,
    log_max_bytes: int,
    http_port: int,
    no_http: bool,
    ui_dir: Path | None,
    health_interval: float,
    shutdown_linger_seconds: float,
    autoscaler_wait_seconds: float,
    recording_lease_seconds: float,
    auth_tokens: Path | None,
    auth_jwks_url: str,
    auth_issuer: str,
    auth_audience: str,
    auth_role_claim: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    max_request_bytes: int,
    max_streams_per_caller: int,
    allow_unauthenticated: bool,
    log_level: str,
) -> None:
    """Start the control plane and serve until SIGTERM or Ctrl-C."""
    from control_plane.server import ServerConfig
    from control_plane.server import serve as run_server
    from control_plane.storage import DatabaseInUseError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    roots = tuple(p.resolve() for p in data_roots) or (Path.cwd(),)
    authorizer = _authorizer(
        auth_tokens, auth_jwks_url, auth_issuer, auth_audience, auth_role_claim
    )
    tls = _tls(tls_cert, tls_key, tls_client_ca)
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
                artifact_root=(
                    artifact_root
                    if not artifact_root or "://" in artifact_root
                    else str(Path(artifact_root).resolve())
                ),
                data_roots=roots,
                ray_address=ray_address,
                stop_ray_on_exit=stop_ray_on_exit,
                tracking_uri=tracking_uri,
                keep_outputs=keep_outputs.replace("-", "_"),
                log_max_bytes=log_max_bytes,
                http_port=None if no_http else http_port,
                ui_dir=ui_dir.resolve() if ui_dir is not None else None,
                health_interval=health_interval,
                recording_lease_seconds=recording_lease_seconds,
                capacity_wait_seconds=autoscaler_wait_seconds,
                shutdown_linger_seconds=shutdown_linger_seconds,
                auth=authorizer,
                tls=tls,
                max_request_bytes=max_request_bytes,
                max_streams_per_principal=max_streams_per_caller,
                allow_unauthenticated=allow_unauthenticated,
            ),
            sign_in_hint=sign_in_hint(data_dir),
        )
    except (DatabaseInUseError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _authorizer(
    tokens: Path | None, jwks_url: str, issuer: str, audience: str, role_claim: str
) -> Any:
    """The Authorizer of serve's --auth-* flags; a usage error for an incomplete JWT set-up or
    a bad token file."""
    from control_plane.auth import Authorizer, JwtVerifier, TokenFile

    jwt = None
    if jwks_url or issuer or audience:
        missing = [
            flag
            for flag, value in (
                ("--auth-jwks-url", jwks_url),
                ("--auth-issuer", issuer),
                ("--auth-audience", audience),
            )
            if not value
        ]
        if missing:
            raise click.UsageError(f"JWT authentication needs {' and '.join(missing)} as well")
        jwt = JwtVerifier(jwks_url, issuer=issuer, audience=audience, role_claim=role_claim)
    try:
        token_file = TokenFile(tokens.resolve()) if tokens is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--auth-tokens") from None
    return Authorizer(tokens=token_file, jwt=jwt)


def _tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> Any:
    """The TlsConfig of serve's --tls-* flags, or None for plaintext."""
    if cert is None and key is None:
        if client_ca is not None:
            raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise click.UsageError("TLS needs both --tls-cert and --tls-key")
    from control_plane.auth.tls import TlsConfig, TlsFiles

    try:
        return TlsConfig(
            TlsFiles(cert.resolve(), key.resolve(), client_ca.resolve() if client_ca else None)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key") from None


@click.group()
def tokens() -> None:
    """Bearer tokens of a token file (raypipe serve --auth-tokens FILE)."""


@tokens.command("create")
@click.option("--name", required=True, help="Who the token is for; shown as the caller.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "operator", "editor", "admin"]),
    help="What the token may do (docs/security.md).",
)
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The token file; created (mode 0600) if missing.",
)
def tokens_create(name: str, role: str, path: Path) -> None:
    """Add a token to FILE and print it, once: only its SHA-256 is stored."""
    from control_plane.auth import Role, append_token

    try:
        token = append_token(path, name, Role.parse(role))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(
        f"# {name} ({role}) added to {path}; the token is shown only now. A running server "
        "picks it up by itself.",
        err=True,
    )


DATA_DIR_OPTION = click.option(
    "--data-dir",
    default=".raypipe",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The data directory `raypipe serve` was started with.",
)


def _head(data_dir: Path) -> Any:
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
