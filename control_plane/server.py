"""The control plane's gRPC server: services, health, reflection, graceful shutdown."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane.auth import Authorizer
from control_plane.auth.interceptor import AuthInterceptor
from control_plane.auth.limits import DEFAULT_STREAMS_PER_PRINCIPAL, StreamLimiter
from control_plane.auth.tls import TlsConfig
from control_plane.drain import DrainGate
from control_plane.metrics import Metrics, MetricsInterceptor
from control_plane.pipelines.service import PipelineService
from control_plane.storage.repository import Repository
from control_plane.storage.sql import open_repository
from ray_nodes.engine.types import KEEP_OUTPUTS
from ray_nodes.logs import DEFAULT_MAX_BYTES as DEFAULT_LOG_MAX_BYTES
from ray_nodes.registry import NodeRegistry, default_registry
from raypipe.v1 import (
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2,
)

if TYPE_CHECKING:
    from control_plane.http_api import HttpApi
    from control_plane.runs.supervisor import RunSupervisor
    from control_plane.schedules.scheduler import Scheduler
    from ray_nodes.cluster import LocalHead
    from ray_nodes.engine import RayEngine

log = logging.getLogger("raypipe.server")

PIPELINE_SERVICES = (pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name,)
RUN_SERVICES = (
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
)


#: The largest request either port reads by default: a spec of thousands of nodes is far below.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """How ``raypipe serve`` runs.

    Attributes:
        data_dir: Where the SQLite database, artifacts and the local Ray head's files live.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        db_url: SQLAlchemy URL of the database; default a SQLite file in ``data_dir``.
        data_roots: Directories data_loader paths may resolve against.
        max_workers: Threads serving calls; streams (WatchRun) hold one each.
        ray_address: An existing Ray cluster's address; empty starts (or reuses) a local Ray
            head for ``data_dir``, as its own process, so runs outlive this server.
        artifact_root: Where node outputs are stored (a directory or an fsspec URL); default
            ``data_dir/artifacts``.
        enable_runs: Serve RunService (needs Ray). Off, the server only manages pipelines.
        stop_ray_on_exit: Stop the local Ray head this server started when it stops (runs
            in flight end with it). Off by default, so runs outlive the server.
        tracking_uri: The MLflow tracking URI every run is recorded to (docs/tracking.md);
            empty means no tracking. ``raypipe serve`` defaults it to
            :func:`~control_plane.tracking.default_tracking_uri` (SQLite in ``data_dir``).
        tracking_retry_for: How long the tracker retries one record while the tracking store
            fails before it writes the problem on the run, in seconds.
        keep_outputs: When node outputs go to the artifact store: ``on_failure`` (those of
            the nodes that succeeded, once a run has failed or been cancelled, for RetryRun)
            or ``always`` (every output as its node ends); see docs/runs.md.
        log_max_bytes: The text each node attempt's log keeps, its first and last halves
            (docs/logs.md); 0 captures no log.
        http_port: The HTTP port serving every service over the Connect protocol
            (control_plane.http_api; docs/http.md); 0 picks a free one; None serves no HTTP.
        ui_dir: The web UI's built files, served on the HTTP port (control_plane.web_ui);
            None serves the repository's ``clients/web/dist``, which ``make install`` builds.
        auth: Who may call what (control_plane.auth; docs/security.md): bearer tokens and
            JWTs checked against one table of rules. The default has no authenticator: every
            caller may do everything, which is allowed on a loopback ``host`` only.
        allow_unauthenticated: Serve a non-loopback ``host`` without authentication anyway.
        tls: TLS on both ports (control_plane.auth.tls), with mutual TLS when it has a client
            CA; None serves plaintext. Reloaded on SIGHUP and when its files change.
        max_request_bytes: The largest request message either port reads (gRPC's max receive
            size, the Connect body limit); larger ones are RESOURCE_EXHAUSTED.
        max_streams_per_principal: How many WatchRun and WatchNodeLogs streams one caller may
            hold open at once (RESOURCE_EXHAUSTED, reason TOO_MANY_STREAMS, beyond); 0: no cap.
        health_interval: Seconds between two checks of the database by the health loop,
            which turns gRPC health ``NOT_SERVING`` while the database does not answer and
            ``SERVING`` again once it does (docs/control-plane.md); 0 turns the loop off.
        shutdown_linger_seconds: On SIGTERM, how long the server keeps its port open after
            turning health NOT_SERVING (refusing new calls with UNAVAILABLE, a retryable
            code) before gRPC stops: time for clients and load balancers that watch health to
            stop sending here (docs/deploy.md).
        capacity_wait_seconds: On a Ray cluster with an autoscaler, how long a node that no
            Ray node can hold waits for the autoscaler to add one before it fails (without
            an autoscaler such a node fails at once; docs/runs.md).
        recording_lease_seconds: How long this replica's lease on recording a run lasts
            unless renewed (control_plane.runs.supervisor; docs/deploy.md): replicas sharing
            a PostgreSQL database take over a dead one's runs within 1.25 times this.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    db_url: str = ""
    data_roots: Sequence[Path] = field(default_factory=tuple)
    max_workers: int = 32
    ray_address: str = ""
    artifact_root: str = ""
    enable_runs: bool = True
    stop_ray_on_exit: bool = False
    tracking_uri: str = ""
    tracking_retry_for: float = 300.0
    keep_outputs: str = "on_failure"
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    http_port: int | None = None
    ui_dir: Path | None = None
    auth: Authorizer = field(default_factory=Authorizer)
    allow_unauthenticated: bool = False
    tls: TlsConfig | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_streams_per_principal: int = DEFAULT_STREAMS_PER_PRINCIPAL
    health_interval: float = 5.0
    recording_lease_seconds: float = 10.0
    capacity_wait_seconds: float = 600.0
    shutdown_linger_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.keep_outputs not in KEEP_OUTPUTS:
            raise ValueError(
                f"keep_outputs must be one of {', '.join(KEEP_OUTPUTS)}, not {self.keep_outputs!r}"
            )
        if self.log_max_bytes < 0:
            raise ValueError(f"log_max_bytes must be >= 0, not {self.log_max_bytes!r}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, not {self.max_request_bytes!r}")
        if self.max_streams_per_principal < 0:
            raise ValueError(
                f"max_streams_per_principal must be >= 0, not {self.max_streams_per_principal!r}"
            )
        if not self.shutdown_linger_seconds >= 0:
            raise ValueError(
                f"shutdown_linger_seconds must be >= 0, not {self.shutdown_linger_seconds!r}"
            )
        if not self.capacity_wait_seconds >= 0:
            raise ValueError(
                f"capacity_wait_seconds must be >= 0, not {self.capacity_wait_seconds!r}"
            )
        if not self.recording_lease_seconds > 0:
            raise ValueError(
                f"recording_lease_seconds must be > 0, not {self.recording_lease_seconds!r}"
            )
        if not self.health_interval >= 0:
            raise ValueError(f"health_interval must be >= 0 seconds, not {self.health_interval!r}")
        authenticated = self.auth.enabled or (self.tls is not None and self.tls.mutual)
        if not authenticated and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without authentication: anyone who can reach "
                "it could run code on the Ray cluster. Add --auth-tokens FILE or --auth-jwks-url "
                "URL (with --auth-issuer and --auth-audience), or --tls-client-ca FILE for mutual "
                "TLS, or --allow-unauthenticated if something in front of this server "
                "authenticates its callers"
            )

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'raypipe.db'}"

    @property
    def artifact_location(self) -> str:
        return self.artifact_root or str(self.data_dir / "artifacts")


class ControlPlane:
    """A running control plane. ``start()`` binds the port; ``stop()`` drains and closes."""

    def __init__(self, config: ServerConfig, *, registry: NodeRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self._streams = StreamLimiter(config.max_streams_per_principal)
        #: The Prometheus metrics, served at /metrics on the HTTP port (control_plane.metrics).
        self.metrics = Metrics()
        self.repository: Repository | None = None
        self.port = 0
        self.http_port = 0
        self._http: HttpApi | None = None
        self._servicers: dict[str, object] = {}  # full service name -> servicer (for HTTP)
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self._stopped = threading.Event()
        self._done = threading.Event()
        self._health_lock = threading.Lock()  # orders the health loop's changes and stop()'s
        self._health_thread: threading.Thread | None = None
        self._services = PIPELINE_SERVICES + (RUN_SERVICES if config.enable_runs else ())
        self._gate = DrainGate(self._services)
        self.local_head: LocalHead | None = None
        self.engine: RayEngine | None = None
        self.supervisor: RunSupervisor | None = None
        self.scheduler: Scheduler | None = None
        self.ray_address = ""

    def start(self) -> int:
        """Open storage, connect to Ray, register the services and listen; returns the port."""
        cfg = self.config
        # Its database, artifacts and the Ray head's token are this user's only.
        cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="rpc"),
            interceptors=[
                MetricsInterceptor(self.metrics),
                self._gate,
                AuthInterceptor(cfg.auth, self._streams),
            ],
            options=[
                ("grpc.max_receive_message_length", cfg.max_request_bytes),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        # Health answers from the first moment, NOT_SERVING until storage (and Ray) are ready,
        # so load balancers and health probes never route to a server that cannot answer.
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection(
            (*self._services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{cfg.host}:{cfg.port}"
        if cfg.tls is not None:
            self.port = server.add_secure_port(address, cfg.tls.grpc_credentials())
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.host}:{cfg.port}")
        self.repository = repo = open_repository(cfg.database_url, exclusive=True)
        self.metrics.count_runs(repo.count_runs_by_state)
        pipelines = PipelineService(repo, self.registry)
        pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(pipelines, server)
        self._servicers["raypipe.v1.PipelineService"] = pipelines
        if cfg.enable_runs:
            self._start_runs(server, repo)
        server.start()
        self._server = server
        if cfg.http_port is not None:
            from control_plane.http_api import HttpApi

            self._http = HttpApi(
                {**self._servicers, health.SERVICE_NAME: self._health},
                self._gate,
                ui_dir=cfg.ui_dir,
                ui_config=self.ui_config,
                authorizer=cfg.auth,
                tls=cfg.tls,
                streams=self._streams,
                max_request_bytes=cfg.max_request_bytes,
                metrics=self.metrics.wsgi_app(),
            )
            self.http_port = self._http.start(cfg.host, cfg.http_port)
            log.info("raypipe HTTP API (Connect) on %s", self.http_url)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if cfg.health_interval > 0:
            self._health_thread = threading.Thread(
                target=self._watch_storage, name="raypipe-health", daemon=True
            )
            self._health_thread.start()
        log.info("raypipe control plane listening on %s:%d", cfg.host, self.port)
        return self.port

    def ui_config(self) -> dict[str, str | bool]:
        """What the web UI needs to know of this deployment (GET /ui-config.json): the Ray
        dashboard, and whether calls need a bearer token."""
        dashboard = self.local_head.dashboard_url if self.local_head is not None else ""
        if not dashboard and self.engine is not None:
            dashboard = self.engine.dashboard_url
        return {"rayDashboardUrl": dashboard, "authRequired": self.config.auth.enabled}

    def _watch_storage(self) -> None:
        """The health loop: every ``health_interval`` seconds, check the database and turn
        health NOT_SERVING while it does not answer, SERVING again once it does."""
        serving = True
        while not self._stopped.wait(self.config.health_interval):
            problem = self._storage_problem()
            if (not problem) == serving:
                continue  # no change
            with self._health_lock:
                if self._stopped.is_set():
                    return  # stop() has set NOT_SERVING for good
                if problem:
                    log.warning("health: NOT_SERVING, the database does not answer: %s", problem)
                    self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
                else:
                    log.info("health: SERVING again, the database answers")
                    self._set_health(health_pb2.HealthCheckResponse.SERVING)
            serving = not problem

    def _storage_problem(self) -> str:
        """Why the database cannot serve calls now; empty when it can."""
        repo = self.repository
        if repo is None:
            return "storage is not open"
        try:
            repo.ping()  # on SQLite also that the file is still there
        except Exception as exc:  # any failure means "not serving"; the loop goes on
            return str(exc) or type(exc).__name__
        return ""

    def _start_runs(self, server: grpc.Server, repo: Repository) -> None:
        # Imported here so that a server without runs never imports Ray.
        from control_plane.runs.service import RunService
        from control_plane.runs.supervisor import RunSupervisor, rebuild_submission
        from control_plane.tracking import open_tracker
        from ray_nodes.cluster import ensure_local_head
        from ray_nodes.engine import RayEngine

        cfg = self.config
        address = cfg.ray_address
        if not address:
            self.local_head = ensure_local_head(cfg.data_dir / "ray")
            address = self.local_head.address
        self.engine = RayEngine(address)
        self.engine.start()
        self.ray_address = address
        data_roots = tuple(str(p) for p in cfg.data_roots) or (str(Path.cwd()),)
        tracker = open_tracker(
            cfg.tracking_uri,
            cfg.data_dir,
            retry_for=cfg.tracking_retry_for,
            registry=self.registry,
            log_root=cfg.artifact_location,
        )
        self.supervisor = RunSupervisor(
            repo,
            self.engine,
            artifact_root=cfg.artifact_location,
            data_roots=data_roots,
            tracker=tracker,
            keep_outputs=cfg.keep_outputs,
            log_max_bytes=cfg.log_max_bytes,
            lease_seconds=cfg.recording_lease_seconds,
            capacity_wait_s=cfg.capacity_wait_seconds,
        )
        self.supervisor.metrics = self.metrics
        self.metrics.tracker_queue.set_function(tracker.pending)
        self.supervisor.start(
            lambda run_id: rebuild_submission(
                repo,
                run_id,
                artifact_root=cfg.artifact_location,
                data_roots=data_roots,
                keep_outputs=cfg.keep_outputs,
                log_max_bytes=cfg.log_max_bytes,
                capacity_wait_s=cfg.capacity_wait_seconds,
            )
        )
        runs = RunService(repo, self.supervisor)
        run_service_pb2_grpc.add_RunServiceServicer_to_server(runs, server)
        self._servicers["raypipe.v1.RunService"] = runs
        self._start_scheduler(server, repo)

    def _start_scheduler(self, server: grpc.Server, repo: Repository) -> None:
        from control_plane.schedules.scheduler import Scheduler, SupervisorStarter
        from control_plane.schedules.service import ScheduleService
        from control_plane.storage.schedules import ScheduleRepository
        from raypipe.v1 import schedule_service_pb2_grpc

        assert self.supervisor is not None
        schedules = ScheduleRepository.of(repo)
        self.scheduler = Scheduler(schedules, SupervisorStarter(repo, self.supervisor))
        self.scheduler.metrics = self.metrics
        self.scheduler.start()
        schedule_servicer = ScheduleService(repo, schedules, self.scheduler)
        schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(schedule_servicer, server)
        self._servicers["raypipe.v1.ScheduleService"] = schedule_servicer

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        self._health.set("", status)
        for name in self._services:
            self._health.set(name, status)

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking calls, let in-flight calls finish (up to ``grace`` seconds), then close
        storage. Safe to call twice."""
        with self._health_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()  # also ends the health loop, which then changes nothing
            self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            # New calls get UNAVAILABLE while those in flight finish, and WatchRun streams
            # end at once; then gRPC stops, and cancels whatever outlasted the grace period.
            started = time.monotonic()
            if self.supervisor is not None:
                self.supervisor.notifier.close()  # WatchRun streams end, UNAVAILABLE
            if self._http is not None:
                self._http.close_streams()  # the HTTP port's streams end as gRPC's do
            if not self._gate.drain(grace):
                log.warning("%d call(s) still in flight after %.0f s", self._gate.active, grace)
            # Clients that watch health (the SDK's round_robin does) stop sending here once
            # they see NOT_SERVING; the rest get UNAVAILABLE from the gate and retry elsewhere.
            # Only then does gRPC stop, since a call reaching it in the moment it stops is
            # CANCELLED, which nobody retries.
            linger = self.config.shutdown_linger_seconds - (time.monotonic() - started)
            if linger > 0:
                time.sleep(min(linger, max(0.0, grace - (time.monotonic() - started))))
            self._server.stop(max(0.0, grace - (time.monotonic() - started))).wait()
            if self._http is not None:
                self._http.stop()
        if self._health_thread is not None:
            self._health_thread.join(timeout=5)  # a check in progress; storage closes below
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.engine is not None:
            self.engine.close()  # runs go on inside Ray; a restarted server re-attaches
        if self.local_head is not None and self.config.stop_ray_on_exit:
            self.local_head.stop()
        if self.repository is not None:
            self.repository.close()
        log.info("raypipe control plane stopped")
        self._done.set()

    @property
    def http_url(self) -> str:
        """The HTTP port's base URL (https with TLS)."""
        scheme = "https" if self.config.tls is not None else "http"
        return f"{scheme}://{self.config.host}:{self.http_port}"

    def wait(self) -> None:
        """Block until ``stop()``; SIGTERM and SIGINT call it, SIGHUP reloads the TLS files
        (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: threading.Thread(target=self.stop).start())
            tls = self.config.tls
            if tls is not None:
                signal.signal(signal.SIGHUP, lambda *_: tls.reload(force=True))
        self._done.wait()


def serve(config: ServerConfig, *, sign_in_hint: str = "") -> None:
    """Run the control plane until SIGTERM or SIGINT.

    Prints one line once it listens (the address, and the local head's dashboard), so scripts
    (and `make run`) can read both at once; with an HTTP port, a line with its URL and one with
    the web UI's; then, for a local head, ``sign_in_hint``: how to get into the dashboard and
    Ray's CLI.
    """
    plane = ControlPlane(config)
    port = plane.start()
    dashboard = plane.local_head.dashboard_url if plane.local_head is not None else ""
    print(
        f"raypipe control plane listening on {config.host}:{port}"
        + (f" (Ray dashboard: {dashboard})" if dashboard else ""),
        flush=True,
    )
    if config.http_port is not None:
        print(f"HTTP API (Connect, JSON): {plane.http_url}", flush=True)
        print(f"Web UI: {plane.http_url}/", flush=True)
    if plane.local_head is not None and sign_in_hint:
        print(sign_in_hint, flush=True)
    plane.wait()
