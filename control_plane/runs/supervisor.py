"""Run supervision in the control plane: the one way a run starts (or is refused), hands runs
to the engine, records what it reports (folded by :mod:`control_plane.runs.events`), and wakes
the watchers of a run.

The graph itself is driven inside Ray (see :mod:`ray_nodes.engine`), so a run keeps going
while this process is down. The engine keeps every event until it is acknowledged; this loop
acknowledges an event only after it is committed to storage, so nothing is lost or doubled
across a restart: a restarted control plane resumes each active run from its stored cursor.

Several replicas may share one database (PostgreSQL) and one Ray cluster. Each run's events
are recorded by one replica at a time, the holder of the run's lease in storage
(:mod:`control_plane.storage._sql_recorders`): the replica that creates a run holds it first,
renews all its leases every quarter of :data:`DEFAULT_LEASE_S`, claims runs whose lease has
lapsed (their recorder died) and gives its leases up when it stops. Every write of engine
events is fenced by the lease, so a replica that lost a run writes nothing more of it; the new
holder resumes from the stored cursor, and the engine still holds every event after it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf import json_format

from control_plane.auth import SCHEDULER, caller_name
from control_plane.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from control_plane.names import parse_version_name
from control_plane.runs.caching import cache_keys, cached_outputs
from control_plane.runs.events import (
    TERMINAL_RUN_STATES,
    NodeState,
    RunState,
    RunView,
    artifact_ref,
    fold_events,
    struct_of,
    touched_nodes,
)
from control_plane.runs.requests import RunRequest, undeclared_parameters
from control_plane.runs.templates import template_values
from control_plane.storage.repository import (
    Closable,
    LeaseLostError,
    NewRun,
    RecorderLease,
    Repository,
    RunChange,
)
from control_plane.tracking import NullTracker, Tracker
from ray_nodes.engine import ArtifactRef, Engine, EngineEvent, RunSubmission
from ray_nodes.engine.types import NodeState as EngineNodeState
from ray_nodes.logs import DEFAULT_MAX_BYTES as DEFAULT_LOG_MAX_BYTES
from raypipe.v1 import pipeline_spec_pb2, run_pb2

if TYPE_CHECKING:
    from control_plane.metrics import Metrics

#: Node states an engine event ends an execution with (a node that ran).
NODE_END_STATES = frozenset(
    {EngineNodeState.SUCCEEDED, EngineNodeState.FAILED, EngineNodeState.CANCELLED}
)

log = logging.getLogger("raypipe.runs")

#: How long the polling loop sleeps while it follows no run. Only ``submit`` starts following
#: one, and it wakes the loop at once, so this is a backstop, not a latency: a run started on
#: an idle server is polled for within milliseconds.
IDLE_WAIT_S = 30.0
#: How long a node that no Ray node can hold waits for the cluster's autoscaler to add one.
DEFAULT_CAPACITY_WAIT_S = 600.0
#: How long a replica's lease on recording a run lasts unless it renews it: when a replica
#: dies, another takes its runs over within this time plus a quarter of it (docs/deploy.md).
DEFAULT_LEASE_S = 10.0


def replica_name() -> str:
    """A name for this process among the control-plane replicas: host, pid and a random part
    (a restarted process on the same host and pid is another replica)."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def dead_here(recorder: str, me: str) -> bool:
    """Whether ``recorder`` names a process of this host that is gone: this process's own
    pid under another name (a restarted container), or a pid that no longer exists. Its runs
    need not wait for its leases to lapse. (Where hosts share a name across pid namespaces a
    live replica may be taken for dead: it then loses its runs to this one, which the fence
    on every write keeps harmless.)"""
    host, _, rest = recorder.partition("/")
    my_host = me.partition("/")[0]
    pid_text = rest.partition("/")[0]
    if host != my_host or recorder == me or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def build_submission(
    run: run_pb2.Run,
    spec: bytes,
    *,
    artifact_root: str,
    data_roots: tuple[str, ...],
    reuse: Mapping[str, tuple[str, tuple[ArtifactRef, ...]]] | None = None,
    keep_outputs: str = "on_failure",
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    capacity_wait_s: float = DEFAULT_CAPACITY_WAIT_S,
) -> RunSubmission:
    """What the engine needs to execute a stored run."""
    run_id = run.name.removeprefix("runs/")
    run_name, scheduled_time = template_values(run)
    return RunSubmission(
        run_id=run_id,
        run_name=run_name,
        pipeline_id=run.pipeline.removeprefix("pipelines/"),
        spec=spec,
        parameters=json_format.MessageToDict(struct_of(run.parameters)),
        artifact_root=artifact_root,
        data_roots=data_roots,
        reuse=dict(reuse or {}),
        scheduled_time=scheduled_time,
        keep_outputs=keep_outputs,
        log_max_bytes=log_max_bytes,
        capacity_wait_s=capacity_wait_s,
    )


def rebuild_submission(
    repo: Repository,
    run_id: str,
    *,
    artifact_root: str,
    data_roots: tuple[str, ...],
    keep_outputs: str = "on_failure",
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    capacity_wait_s: float = DEFAULT_CAPACITY_WAIT_S,
) -> RunSubmission | None:
    """The submission of a stored run (a retry's reuse comes from the run it retries)."""
    run = repo.get_run(run_id)
    pipeline_id, _, number = run.pipeline_version.removeprefix("pipelines/").partition("/versions/")
    try:
        version = repo.get_version(pipeline_id, int(number))
    except NotFoundError:
        return None  # the pipeline was force-deleted meanwhile: the run cannot start
    keys = {n.node_id: n.cache_key for n in run.nodes if n.cache_key}
    reuse = {
        **cached_outputs(repo, keys, run_id=run_id),
        **(
            reusable_outputs(repo.get_run(run.retry_of.removeprefix("runs/")))
            if run.retry_of
            else {}
        ),
    }
    return build_submission(
        run,
        version.spec.SerializeToString(),
        artifact_root=artifact_root,
        data_roots=data_roots,
        reuse=reuse,
        keep_outputs=keep_outputs,
        log_max_bytes=log_max_bytes,
        capacity_wait_s=capacity_wait_s,
    )


REUSABLE_NODE_STATES = (NodeState.STATE_SUCCEEDED, NodeState.STATE_CACHED)


def reusable_outputs(run: run_pb2.Run) -> dict[str, tuple[str, tuple[ArtifactRef, ...]]]:
    """node id -> (the run that produced its output, the stored artifacts), for RetryRun."""
    run_id = run.name.removeprefix("runs/")
    return {
        node.node_id: (
            node.cached_from.removeprefix("runs/") or run_id,
            tuple(artifact_ref(a) for a in node.artifacts),
        )
        for node in run.nodes
        if node.state in REUSABLE_NODE_STATES and node.artifacts
    }


class RunNotifier:
    """Wakes the WatchRun streams of a run when new events are stored."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the server is shutting down: streams end instead of waiting on."""
        return self._closed

    def close(self) -> None:
        """Wake every waiting stream for good (the server is shutting down)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def notify(self, run_ids: Iterable[str]) -> None:
        with self._cond:
            for run_id in run_ids:
                self._versions[run_id] = self._versions.get(run_id, 0) + 1
            self._cond.notify_all()

    def version(self, run_id: str) -> int:
        with self._cond:
            return self._versions.get(run_id, 0)

    def wait(self, run_id: str, seen: int, timeout: float) -> int:
        """Block until the run's version passes ``seen``, ``timeout`` elapses or the
        notifier closes."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._versions.get(run_id, 0) != seen, timeout
            )
            return self._versions.get(run_id, 0)


class RunSupervisor:
    """Submits runs to the engine and records what the engine reports, in one thread."""

    def __init__(
        self,
        repository: Repository,
        engine: Engine,
        *,
        artifact_root: str,
        data_roots: tuple[str, ...],
        poll_timeout: float = 1.0,
        tracker: Tracker | None = None,
        keep_outputs: str = "on_failure",
        log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        lease_seconds: float = DEFAULT_LEASE_S,
        replica: str = "",
        capacity_wait_s: float = DEFAULT_CAPACITY_WAIT_S,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, not {lease_seconds!r}")
        self._repo = repository
        #: This replica's name in storage: the recorder of the runs it holds leases on.
        self.replica = replica or replica_name()
        self.lease_seconds = lease_seconds
        self.tracker: Tracker = tracker or NullTracker()
        #: Where recording is reported (control_plane.metrics); None reports nothing.
        self.metrics: Metrics | None = None
        self._node_types: dict[str, dict[str, str]] = {}
        self._engine = engine
        self.artifact_root = artifact_root
        self.data_roots = data_roots
        self.keep_outputs = keep_outputs
        self.log_max_bytes = log_max_bytes
        #: How long a node waits for an autoscaler to add a Ray node that can hold it.
        self.capacity_wait_s = capacity_wait_s
        self._poll_timeout = poll_timeout
        self.notifier = RunNotifier()
        self._cursors: dict[str, int] = {}
        self._views: dict[str, RunView] = {}  # the followed runs, whole (popped under _lock)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._followed = threading.Event()  # set when a run is followed (and at stop)
        self._thread = threading.Thread(target=self._loop, name="run-supervisor", daemon=True)
        self._leases = threading.Thread(target=self._lease_loop, name="run-leases", daemon=True)
        self._rebuild: Callable[[str], RunSubmission | None] = lambda run_id: None
        self._listener: Closable | None = None

    def start(self, rebuild: Callable[[str], RunSubmission | None]) -> None:
        """Take the active runs nobody records (on a SQLite file this process owns: all of
        them), start the loop, and keep the leases (see the module's docstring).

        A PENDING run the engine has never heard of was stored but not submitted before the
        previous process died: ``rebuild`` recreates its submission (submitting is idempotent).
        Any other active run the engine does not know was lost with the cluster.
        """
        self.tracker.start(self._store_tracking)
        self._rebuild = rebuild
        # Other replicas' records wake this one's watchers (PostgreSQL's LISTEN/NOTIFY).
        self._listener = self._repo.listen_runs(lambda run_id: self.notifier.notify([run_id]))
        self._adopt(everything=not self._repo.shared)
        self._thread.start()
        self._leases.start()

    def stop(self) -> None:
        """Stop recording and give this replica's leases up: another replica takes its runs
        at its next check instead of waiting for the leases to lapse."""
        self._stop.set()
        self._followed.set()
        self._thread.join(timeout=self._poll_timeout + 5)
        if self._leases.is_alive():
            self._leases.join(timeout=self.lease_seconds + 5)
        if self._listener is not None:
            self._listener.close()
        try:
            released = self._repo.release_claims(self.replica)
            if released:
                log.info("gave up recording %d run(s) to the other replicas", released)
        except Exception:
            log.exception("giving up the recording leases failed; they lapse by themselves")
        self.tracker.close()

    def _lost_lease(self, run_id: str) -> None:
        log.warning("run %s: another replica records it now (this one's lease lapsed)", run_id)
        if self.metrics is not None:
            self.metrics.leases_lost.inc()

    def _lease(self) -> RecorderLease:
        return RecorderLease(self.replica, time.time() + self.lease_seconds)

    def _adopt(self, *, everything: bool = False) -> None:
        """Claim and follow the active runs whose recorder is gone (``everything``: every
        active run, for the sole writer of a SQLite file at start)."""
        now = math.inf if everything else time.time()
        found = self._repo.active_run_ids() if everything else self._repo.unclaimed_run_ids(now)
        # A predecessor of this process on this host that died (kill -9, a crash) leaves
        # leases that would hold its runs for a lease's time: they are taken at once.
        dead = {} if everything else self._dead_predecessors()
        with self._lock:
            candidates = [r for r in dict.fromkeys([*found, *dead]) if r not in self._cursors]
        if not candidates:
            return
        known = set(self._engine.known_runs())
        for run_id in candidates:
            if not self._repo.claim_run(
                run_id, self._lease(), now=now, replacing=dead.get(run_id, "")
            ):
                continue  # another replica was quicker, or the run ended meanwhile
            if self.metrics is not None:
                self.metrics.adopted.inc()
            cursor = self._repo.engine_cursor(run_id)
            if run_id in known:
                log.info("run %s: recording it from engine event %d on", run_id, cursor)
                with self._lock:
                    self._cursors[run_id] = cursor
                    self._views.pop(run_id, None)
                self._track(self._resume_tracking, run_id)
                continue
            submission = self._rebuild(run_id) if cursor == 0 else None
            if submission is not None:
                log.info("run %s: submitting again after a restart", run_id)
                self._engine.submit(submission)
                with self._lock:
                    self._cursors[run_id] = 0
            else:
                self._lose(run_id)
        self._followed.set()

    def _dead_predecessors(self) -> dict[str, str]:
        """Active runs held by a dead process of this host: run id -> its recorder."""
        host = self.replica.partition("/")[0]
        return {
            run_id: recorder
            for run_id, recorder in self._repo.recorders_like(f"{host}/").items()
            if dead_here(recorder, self.replica)
        }

    def _lease_loop(self) -> None:
        """Renew this replica's leases, drop the runs it lost, and claim the runs whose
        recorder died, every quarter of the lease."""
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                with self._lock:
                    following = bool(self._cursors)
                # Nothing to renew while this replica follows no run (an idle server writes
                # nothing); a run it has just created holds a fresh lease.
                held = self._repo.renew_claims(self._lease()) if following else set()
                with self._lock:
                    lost = [r for r in self._cursors if r not in held] if following else []
                    for run_id in lost:
                        self._cursors.pop(run_id, None)
                        self._views.pop(run_id, None)
                for run_id in lost:
                    self._lost_lease(run_id)
                if self._repo.shared:
                    self._adopt()
            except Exception:
                log.exception("keeping the recording leases failed; retrying")

    def start_run(self, request: RunRequest) -> run_pb2.Run:
        """Start a run: the one way every caller starts one (see :class:`RunRequest`).

        Resolves the version (the pipeline's default when none is given), checks the
        parameters against it, then :meth:`launch` stores the run, looks its cached nodes up
        and hands it to the engine; or :meth:`refuse` records why it cannot run.

        Raises:
            NotFoundError: the pipeline or version does not exist.
            FailedPreconditionError: the pipeline has no version yet (PIPELINE_HAS_NO_VERSION).
            InvalidArgumentError: an undeclared parameter, unless ``refuse_undeclared``.
        """
        number = request.version_number
        if number is None:
            pipeline = self._repo.get_pipeline(request.pipeline_id)
            if not pipeline.default_version:
                raise FailedPreconditionError(
                    f"pipeline {pipeline.name!r} has no version yet: create one first",
                    reason="PIPELINE_HAS_NO_VERSION",
                )
            _, number = parse_version_name(pipeline.default_version, "run.pipeline")
        version = self._repo.get_version(request.pipeline_id, number)
        spec = version.spec.SerializeToString()
        new = NewRun(
            run_id=uuid.uuid4().hex,
            pipeline_id=request.pipeline_id,
            version_number=number,
            parameters=dict(request.parameters),
            node_ids=[n.id for n in version.spec.nodes],
            display_name=request.display_name,
            labels=dict(request.labels),
            request_id=request.request_id,
            schedule=request.schedule,
            scheduled_time=request.scheduled_time,
            retry_of=request.retry_of,
            creator=SCHEDULER if request.schedule else caller_name(),
        )
        undeclared = undeclared_parameters(version.spec, request.parameters)
        if undeclared and request.refuse_undeclared:
            message = (
                f"{version.name} declares no parameter {', '.join(map(repr, undeclared))}: "
                "update the schedule's parameters or pin a version that declares them"
            )
            error = run_pb2.ExecutionError(type="raypipe.InvalidParameters", message=message)
            return self.refuse(new, spec, error)
        if undeclared:
            declared = ", ".join(sorted(version.spec.parameters)) or "none"
            raise InvalidArgumentError.from_violations(
                FieldViolation(
                    f"run.parameters[{name!r}]",
                    f"the pipeline version declares no parameter {name!r} (declared: {declared})",
                )
                for name in undeclared
            )
        return self.launch(new, spec, request.reuse)

    def launch(
        self,
        new: NewRun,
        spec: bytes,
        reuse: Mapping[str, tuple[str, tuple[ArtifactRef, ...]]] | None = None,
    ) -> run_pb2.Run:
        """Store a new run and hand it to the engine; the one way runs start.

        A ``request_id`` (or a (schedule, scheduled_time)) seen before returns the stored run
        without submitting it again. If Ray cannot take the run it is recorded FAILED.
        """
        spec_message = pipeline_spec_pb2.PipelineSpec.FromString(spec)
        keys = cache_keys(spec_message, new.parameters, run_id=new.run_id)
        stored, created = self._repo.create_run(
            dataclasses.replace(new, cache_keys=keys, recorder=self._lease())
        )
        if not created:
            return stored
        self._track(self.tracker.run_started, stored, spec_message)
        # A retry's own reuse (the nodes that succeeded in the run it retries) comes first.
        reuse = {**cached_outputs(self._repo, keys, run_id=new.run_id), **(reuse or {})}
        submission = build_submission(
            stored,
            spec,
            artifact_root=self.artifact_root,
            data_roots=self.data_roots,
            reuse=reuse,
            keep_outputs=self.keep_outputs,
            log_max_bytes=self.log_max_bytes,
            capacity_wait_s=self.capacity_wait_s,
        )
        try:
            self.submit(submission)
        except Exception as e:
            log.exception("run %s: submission to Ray failed", new.run_id)
            error = run_pb2.ExecutionError(
                type=f"{type(e).__module__}.{type(e).__qualname__}",
                message=f"could not hand the run to Ray: {e}",
            )
            stored = self._finish(new.run_id, RunState.STATE_FAILED, error)
        return stored

    def refuse(self, new: NewRun, spec: bytes, error: run_pb2.ExecutionError) -> run_pb2.Run:
        """Store a run that must not start as FAILED with ``error``, never handing it to Ray.

        The same path as every run's end: watchers are woken and the tracker records it (an
        MLflow run, then FAILED), so a refused start is seen wherever runs are looked at. A
        ``request_id`` (or a (schedule, scheduled_time)) seen before returns the stored run.
        """
        stored, created = self._repo.create_run(new)
        if not created:
            return stored
        self._track(
            self.tracker.run_started, stored, pipeline_spec_pb2.PipelineSpec.FromString(spec)
        )
        return self._finish(new.run_id, RunState.STATE_FAILED, error)

    def request_cancel(self, run: run_pb2.Run) -> run_pb2.Run:
        """Record CANCELLING (once) and ask the engine to stop the run."""
        run_id = run.name.removeprefix("runs/")
        if run.state != RunState.STATE_CANCELLING:
            event = run_pb2.RunEvent(
                type=run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED,
                run_state=RunState.STATE_CANCELLING,
                message="cancel requested",
            )
            event.time.GetCurrentTime()
            run, _ = self._repo.record(
                run_id, RunChange(state=RunState.STATE_CANCELLING, events=[event])
            )
            self.notifier.notify([run_id])
        self._engine.cancel(run_id)
        return run

    def _finish(
        self,
        run_id: str,
        state: run_pb2.Run.State,
        error: run_pb2.ExecutionError,
        *,
        fenced: bool = False,
    ) -> run_pb2.Run:
        """Record a terminal state that the engine will never report; ``fenced``: only while
        this replica records the run (LeaseLostError otherwise)."""
        now = datetime.now(UTC)
        event = run_pb2.RunEvent(
            type=run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED, run_state=state, message=error.message
        )
        event.time.FromDatetime(now)
        run, _ = self._repo.record(
            run_id,
            RunChange(state=state, end_time=now, error=error, events=[event]),
            lease=self._lease() if fenced else None,
        )
        self.notifier.notify([run_id])
        self._track(self.tracker.run_finished, run)
        return run

    def submit(self, submission: RunSubmission) -> None:
        """Hand a stored PENDING run to the engine and follow it."""
        # Registered with the engine first, so the poll that follows the run finds it there.
        self._engine.submit(submission)
        with self._lock:
            self._cursors.setdefault(submission.run_id, 0)
        self._followed.set()  # an idle loop starts polling at once

    def cancel(self, run_id: str) -> None:
        self._engine.cancel(run_id)

    def _lose(self, run_id: str) -> None:
        """The engine does not know an active run: its supervisor (or the cluster) was lost."""
        message = "the Ray cluster lost this run (its supervisor or the cluster restarted)"
        try:
            self._finish(
                run_id,
                RunState.STATE_FAILED,
                run_pb2.ExecutionError(type="raypipe.RunLost", message=message),
                fenced=True,
            )
        except LeaseLostError:
            return  # another replica records it now, and decides
        log.warning("run %s: %s", run_id, message)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._followed.clear()  # before the read: a run followed after it sets it again
            if self._stop.is_set():
                break  # stop() sets _stop before _followed: its wake-up may just be cleared
            with self._lock:
                cursors = dict(self._cursors)
            if not cursors:
                self._followed.wait(IDLE_WAIT_S)
                continue
            try:
                result = self._engine.poll(cursors, self._poll_timeout)
            except Exception:
                log.exception("polling the engine failed; retrying")
                self._stop.wait(1.0)
                continue
            for run_id in result.unknown:
                with self._lock:
                    self._cursors.pop(run_id, None)
                    self._views.pop(run_id, None)
                self._lose(run_id)
            metrics = self.metrics
            if metrics is not None:
                metrics.followed.set(len(cursors))
                metrics.backlog.set(sum(len(events) for events in result.events.values()))
            for run_id, events in result.events.items():
                try:
                    self._record(run_id, events)
                except Exception:
                    log.exception(
                        "run %s: recording %d events failed; will retry", run_id, len(events)
                    )
                if metrics is not None:
                    metrics.backlog.dec(len(events))

    def _record(self, run_id: str, events: list[EngineEvent]) -> None:
        # Only the nodes these events touch are read and returned; the whole run, which the
        # tracker hooks take, is kept up to date in a RunView (read whole once per run).
        touched = touched_nodes(ev.node_id for ev in events)
        change = fold_events(self._repo.get_run(run_id, node_ids=touched), events)
        try:
            partial, _ = self._repo.record(run_id, change, node_ids=touched, lease=self._lease())
        except LeaseLostError:
            # This replica's lease lapsed and another took the run: it records (and
            # acknowledges) these events from the stored cursor on.
            with self._lock:
                self._cursors.pop(run_id, None)
                self._views.pop(run_id, None)
            self._lost_lease(run_id)
            return
        view = self._views.get(run_id)
        if view is None:
            stored = self._repo.get_run(run_id)
            self._views[run_id] = RunView(stored)
        else:
            stored = view.update(partial)
        last = events[-1].seq
        self._engine.ack(run_id, last)
        with self._lock:
            if stored.state in TERMINAL_RUN_STATES:
                self._cursors.pop(run_id, None)
                self._views.pop(run_id, None)
            else:
                self._cursors[run_id] = last
        self.notifier.notify([run_id])
        if self.metrics is not None:
            self._measure(stored, events)
        self._track(self.tracker.events, stored, events)
        if change.state in TERMINAL_RUN_STATES:
            self._track(self.tracker.run_finished, stored)

    def _measure(self, run: run_pb2.Run, events: list[EngineEvent]) -> None:
        """Count the recorded events; time each node that ended, by its type."""
        metrics = self.metrics
        assert metrics is not None
        metrics.events.inc(len(events))
        run_id = run.name.removeprefix("runs/")
        ended = [e for e in events if e.kind == "node" and e.state in NODE_END_STATES]
        if ended:
            types = self._node_types.get(run_id)
            if types is None:
                pipeline_id, _, number = run.pipeline_version.removeprefix("pipelines/").partition(
                    "/versions/"
                )
                spec = self._repo.get_version(pipeline_id, int(number)).spec
                types = self._node_types[run_id] = {n.id: n.type for n in spec.nodes}
            for event in ended:
                if event.start_time and event.end_time:
                    seconds = event.end_time - event.start_time
                else:
                    seconds = event.metrics.get("duration_seconds", 0.0)
                node_type = types.get(event.node_id, "")
                metrics.node_seconds.labels(node_type, event.state.lower()).observe(
                    max(0.0, seconds)
                )
        if run.state in TERMINAL_RUN_STATES:
            self._node_types.pop(run_id, None)

    # -- experiment tracking: hooks that never block and never fail the run ----------------------

    def _track(self, hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("experiment tracking hook %s failed", getattr(hook, "__name__", hook))

    def _resume_tracking(self, run_id: str) -> None:
        run = self._repo.get_run(run_id)
        if not run.tracking.run_id:
            return
        pipeline_id, _, number = run.pipeline_version.removeprefix("pipelines/").partition(
            "/versions/"
        )
        version = self._repo.get_version(pipeline_id, int(number))
        self.tracker.run_resumed(run, version.spec)

    def _store_tracking(self, run_id: str, info: run_pb2.TrackingInfo) -> None:
        """Save what the tracker recorded (its MLflow run id, URL, problems) on the run."""
        self._repo.record(run_id, RunChange(tracking=info))
        self.notifier.notify([run_id])

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and shutdown: wait until no run is followed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._cursors:
                    return True
            time.sleep(0.05)
        return False
