"""What runs inside each node's Ray task: the node type's ``run`` with retries, measurements
and, where the plan says so (``persist_output``), the output written to the artifact store.

The task returns two objects: the output, which downstream tasks take as an argument (it
stays in Ray's object store, zero-copy for numpy/Arrow-backed data, and never passes through
the supervisor or the control plane), and a small info dict the supervisor waits on.

A node tells the supervisor it is running only once it has run for
:data:`STARTED_REPORT_DELAY_S`, or at once for a retry: most nodes of a wide or long graph
take milliseconds, and an actor call each would cost more than the node. A node that ends
before the report carries its start time in its result (or in its :class:`NodeError`), and
the supervisor emits the RUNNING state change then, just before the final one, so watchers
still see every state change with its real time.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ray

from ray_nodes.engine.artifacts import inline_output, load_output, store_file, store_output
from ray_nodes.engine.capture import captured
from ray_nodes.engine.types import ArtifactRef, NodeResult
from ray_nodes.errors import RayNodesError
from ray_nodes.logs import DEFAULT_MAX_BYTES, LogWriter
from ray_nodes.node import NodeContext

SUPERVISOR_NAME = "raypipe-supervisor"
#: A node that runs longer than this reports RUNNING while it runs; shorter ones report it
#: with their result.
STARTED_REPORT_DELAY_S = 0.05
_supervisor: Any = None


@dataclass(frozen=True)
class NodeOutcome:
    """What a node's task hands the supervisor beside its output (the task's second return):
    how the attempt that succeeded went.

    Attributes:
        attempt: The attempt that succeeded, from 1.
        start_time: When it started (Unix seconds).
        end_time: When it ended.
        metrics: What was measured (duration, peak memory, rows) and what the node reported.
        artifacts: The stored output (when stored) and the files the node wrote.
        output_stored: Whether the output went to the artifact store (else it is inline).
        notes: What the node noted for the user.
        ray_task_id: The Ray task that ran it.
        ray_node_id: The Ray node it ran on (hex id).
        ray_node_address: That node's IP address.
    """

    attempt: int
    start_time: float
    end_time: float
    metrics: dict[str, float]
    artifacts: tuple[ArtifactRef, ...]
    output_stored: bool
    notes: tuple[str, ...]
    ray_task_id: str
    ray_node_id: str = ""
    ray_node_address: str = ""


@dataclass(frozen=True)
class NodePlan:
    """Everything a node's task needs, fixed when the run is compiled."""

    run_id: str
    run_name: str
    pipeline_id: str
    node_id: str
    type_name: str
    params: dict[str, Any]
    output_kind: str
    num_cpus: float
    num_inputs: int
    artifact_root: str
    data_roots: tuple[str, ...]
    namespace: str
    max_retries: int = 0
    initial_backoff: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff: float = 0.0
    retry_application_errors: bool = False
    retry_on: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: Write the output to the artifact store when the node ends (else only a tiny output,
    #: inline; the supervisor writes the rest if the run does not succeed).
    persist_output: bool = True
    #: The text each attempt's log keeps (head and tail, ray_nodes.logs); 0: no capture.
    log_max_bytes: int = DEFAULT_MAX_BYTES


def _handle(namespace: str) -> Any:
    global _supervisor
    if _supervisor is None:
        _supervisor = ray.get_actor(SUPERVISOR_NAME, namespace=namespace)
    return _supervisor


def _rows(value: Any) -> int | None:
    """Rows of a table-like value: DataFrames, Arrow tables, arrays, splits (train + test)."""
    if value is None:
        return None
    x_train = getattr(value, "X_train", None)
    if x_train is not None:
        x_test = getattr(value, "X_test", None)
        return len(x_train) + (len(x_test) if x_test is not None else 0)
    num_rows = getattr(value, "num_rows", None)
    if isinstance(num_rows, int):
        return num_rows
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and shape:
        return int(shape[0])
    return None


class _PeakRss:
    """The peak resident memory of this worker while a node runs.

    Workers are reused, so the process's lifetime maximum would not be this node's: one
    sampling thread per worker (started once) tracks the peak since the last ``reset``.
    """

    _lock = threading.Lock()
    _thread: threading.Thread | None = None
    _process = psutil.Process()
    _statm: int | None = None  # an open /proc/self/statm, read again with pread (Linux)
    _page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    peak = 0

    @classmethod
    def _rss(cls) -> int:
        # psutil opens /proc/self/statm on every call (about 15 us); a kept descriptor reads
        # the same numbers in a fraction of that, which counts at thousands of nodes a second.
        if cls._statm is not None:
            return int(os.pread(cls._statm, 128, 0).split()[1]) * cls._page
        return int(cls._process.memory_info().rss)

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            if cls._thread is None and os.path.exists("/proc/self/statm"):
                cls._statm = os.open("/proc/self/statm", os.O_RDONLY)
            cls.peak = cls._rss()
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._sample, daemon=True)
                cls._thread.start()

    @classmethod
    def _sample(cls) -> None:
        while True:
            time.sleep(0.02)
            rss = cls._rss()
            with cls._lock:
                cls.peak = max(cls.peak, rss)

    @classmethod
    def read(cls) -> int:
        rss = cls._rss()
        with cls._lock:
            cls.peak = max(cls.peak, rss)
            return cls.peak


class _StartedReport:
    """Sends one node attempt's RUNNING report after a delay, unless the attempt ends first.

    A worker runs one task at a time, so one slot and one daemon thread per worker suffice
    (a thread per task would cost as much as the report it saves).
    """

    _cond = threading.Condition()
    _thread: threading.Thread | None = None
    _due: float = 0.0
    _send: Any = None
    _waking_at: float | None = None  # when the thread wakes by itself; None: only if notified

    @classmethod
    def arm(cls, send: Any, delay: float) -> None:
        with cls._cond:
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._loop, daemon=True)
                cls._thread.start()
            cls._send, cls._due = send, time.monotonic() + delay
            # A thread that wakes before the new due time re-checks by itself: waking it for
            # every node of a burst of short ones would cost a thread switch each.
            if cls._waking_at is None or cls._waking_at > cls._due:
                cls._cond.notify()

    @classmethod
    def disarm(cls) -> None:
        """Cancel the pending report (if it has not gone yet)."""
        with cls._cond:
            cls._send = None

    @classmethod
    def _loop(cls) -> None:
        while True:
            with cls._cond:
                while cls._send is None:
                    cls._waking_at = None
                    cls._cond.wait()
                wait = cls._due - time.monotonic()
                if wait > 0:
                    cls._waking_at = cls._due
                    cls._cond.wait(wait)
                    continue  # re-check: disarmed or re-armed meanwhile
                send, cls._send = cls._send, None
            # A supervisor that is gone cannot be told; the task's result will say it all.
            with contextlib.suppress(Exception):
                send()


def _retryable(plan: NodePlan, exc: BaseException) -> bool:
    if plan.retry_on:
        names = {cls.__name__ for cls in type(exc).__mro__}
        names |= {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
        return bool(names & set(plan.retry_on))
    return plan.retry_application_errors


def _attempts_before(plan: NodePlan, supervisor: Any) -> int:
    """How many attempts of this node ran before this execution of its task: 0 the first
    time; after Ray re-executed the task (a system failure), the highest attempt the
    supervisor heard of, and at least one per earlier execution (an attempt killed before it
    reported counts too)."""
    try:
        worker: Any = ray._private.worker.global_worker
        executions = worker.core_worker.get_current_task_attempt_number()
    except AttributeError:  # no such call in this Ray: count from 1 again
        return 0
    if not executions:
        return 0
    reported = ray.get(supervisor.attempts_made.remote(plan.run_id, plan.node_id), timeout=60)
    return max(int(reported), int(executions))


def _backoff(plan: NodePlan, attempt: int) -> float:
    delay = plan.initial_backoff * plan.backoff_multiplier ** (attempt - 1)
    return min(delay, plan.max_backoff) if plan.max_backoff > 0 else delay


class NodeError(RayNodesError):
    """A node's failure as it crosses Ray: the original type name, message and traceback, so
    the record keeps them even when the exception class does not unpickle elsewhere; and the
    failed attempt with its start time, task and Ray node (for an attempt that failed before
    its start report went out)."""

    def __init__(
        self,
        type_name: str,
        message: str,
        tb: str,
        attempt: int = 0,
        start_time: float = 0.0,
        log_tail: tuple[str, ...] = (),
        ray_task_id: str = "",
        ray_node: tuple[str, str] = ("", ""),
    ) -> None:
        super().__init__(
            type_name, message, tb, attempt, start_time, log_tail, ray_task_id, ray_node
        )
        self.type_name = type_name
        self.message = message
        self.tb = tb
        self.attempt = attempt
        self.start_time = start_time
        self.log_tail = log_tail
        self.ray_task_id = ray_task_id
        self.ray_node = ray_node

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


def execute_node(plan: NodePlan, *args: Any) -> tuple[Any, NodeOutcome]:
    """Run one node: every attempt, its measurements, and the stored output.

    ``args`` holds the node's inputs (the first ``plan.num_inputs``), then placeholders of
    upstream nodes it only waits for.
    """
    from ray_nodes.registry import default_registry

    inputs = args[: plan.num_inputs]
    node_type = default_registry().get(plan.type_name)
    runtime = ray.get_runtime_context()
    task_id = runtime.get_task_id() or ""
    ray_node = (runtime.get_node_id() or "", ray.util.get_node_ip_address())
    gpu_ids = tuple(int(g) for g in ray.get_gpu_ids())
    supervisor = _handle(plan.namespace)
    # Attempts count on across Ray's own re-executions of this task after a system failure
    # (a worker or node died mid-attempt), so the record shows every try; the retry policy's
    # budget for application errors is per execution, as Ray's max_retries is for the rest.
    first = _attempts_before(plan, supervisor)
    attempt = first
    while True:
        attempt += 1
        started = time.time()

        def started_report(a: int = attempt, at: float = started) -> None:
            supervisor.node_started.remote(plan.run_id, plan.node_id, a, task_id, at, *ray_node)

        # A retry is news at once; a first attempt only once it is not over in a blink.
        _StartedReport.arm(started_report, STARTED_REPORT_DELAY_S if attempt == 1 else 0.0)

        def report(metrics: Mapping[str, float], message: str, a: int = attempt) -> None:
            supervisor.node_progress.remote(plan.run_id, plan.node_id, a, dict(metrics), message)

        ctx = NodeContext(
            run_id=plan.run_id,
            run_name=plan.run_name,
            pipeline_id=plan.pipeline_id,
            node_id=plan.node_id,
            attempt=attempt,
            params=dict(plan.params),
            num_cpus=plan.num_cpus,
            gpu_ids=gpu_ids,
            artifact_root=plan.artifact_root,
            data_roots=tuple(Path(p) for p in plan.data_roots),
            notes=list(plan.notes),
            _report=report,
        )
        _PeakRss.reset()
        log = _attempt_log(plan, attempt)
        try:
            with captured(log) if log is not None else contextlib.nullcontext():
                result = node_type().run(ctx, list(inputs))
        except Exception as exc:
            _StartedReport.disarm()
            tail = log.tail() if log is not None else ()
            _close_log(log, f"attempt {attempt} failed:\n{traceback.format_exc()}".rstrip())
            if attempt - first <= plan.max_retries and _retryable(plan, exc):
                delay = _backoff(plan, attempt - first)
                supervisor.node_progress.remote(
                    plan.run_id,
                    plan.node_id,
                    attempt,
                    {},
                    f"attempt {attempt} failed ({type(exc).__name__}: {exc}); retrying in {delay:g} s",
                )
                time.sleep(delay)
                continue
            kind = type(exc)
            raise NodeError(
                f"{kind.__module__}.{kind.__qualname__}",
                str(exc),
                traceback.format_exc(),
                attempt,
                started,
                tail,
                task_id,
                ray_node,
            ) from None
        except BaseException:  # cancelled (KeyboardInterrupt): the supervisor knows
            _StartedReport.disarm()
            _close_log(log, f"attempt {attempt} was cancelled")
            raise
        _StartedReport.disarm()
        _close_log(log)
        peak = _PeakRss.read()
        break
    ended = time.time()
    output: Any = result
    metrics: dict[str, float] = {}
    artifacts: tuple[Any, ...] = ()
    if isinstance(result, NodeResult):
        output, metrics, artifacts = result.output, dict(result.metrics), tuple(result.artifacts)
    where = {"root": plan.artifact_root, "run_id": plan.run_id, "node_id": plan.node_id}
    stored = (
        store_output(output, kind=plan.output_kind, **where)
        if plan.persist_output
        else inline_output(output, kind=plan.output_kind)
    )
    measured: dict[str, float] = {
        "duration_seconds": ended - started,
        "peak_memory_bytes": float(peak),
    }
    rows_in = [r for r in (_rows(i) for i in inputs) if r is not None]
    if rows_in:
        measured["rows_in"] = float(sum(rows_in))
    rows_out = _rows(output)
    if rows_out is not None:
        measured["rows_out"] = float(rows_out)
    measured.update({k: float(v) for k, v in metrics.items()})
    outcome = NodeOutcome(
        attempt=attempt,
        start_time=started,
        end_time=ended,
        metrics=measured,
        artifacts=(
            *(() if stored is None else (stored,)),
            *(_artifact(plan, extra) for extra in artifacts),
        ),
        output_stored=stored is not None,
        notes=tuple(ctx.notes),
        ray_task_id=task_id,
        ray_node_id=ray_node[0],
        ray_node_address=ray_node[1],
    )
    return output, outcome


def _attempt_log(plan: NodePlan, attempt: int) -> LogWriter | None:
    """The writer of this attempt's log, or None when the run captures none."""
    if plan.log_max_bytes <= 0:
        return None
    return LogWriter(
        plan.artifact_root, plan.run_id, plan.node_id, attempt, max_bytes=plan.log_max_bytes
    )


def _close_log(log: LogWriter | None, note: str = "") -> None:
    """Write the attempt's log whole; a store that fails must not change the node's outcome."""
    if log is None:
        return
    if note:
        log.write("raypipe", note)
    with contextlib.suppress(Exception):
        log.close()


def _artifact(plan: NodePlan, value: ArtifactRef | Mapping[str, Any]) -> ArtifactRef:
    """An extra artifact a node returned: a reference to a file it wrote, or (``content``
    without ``uri``) data the engine writes beside the node's output."""
    if isinstance(value, ArtifactRef):
        return value
    if "uri" not in value and "content" in value:
        return store_file(
            value["content"],
            root=plan.artifact_root,
            run_id=plan.run_id,
            node_id=plan.node_id,
            name=str(value["name"]),
            fmt=str(value.get("format", "bin")),
            kind=str(value.get("kind", "metrics")),
        )
    return ArtifactRef(
        name=str(value["name"]),
        kind=str(value.get("kind", "")),
        uri=str(value["uri"]),
        size_bytes=int(value.get("size_bytes", 0)),
        sha256=str(value.get("sha256", "")),
        metadata=dict(value.get("metadata", {})),
    )


def load_reused(refs: Sequence[ArtifactRef]) -> tuple[Any, bool]:
    """The stored output of a node that a run reuses, and a small marker that it loaded (what
    the supervisor waits on, so the output never travels into the supervisor)."""
    output = next((r for r in refs if r.name == "output"), None)
    if output is None:
        raise FileNotFoundError("the reused node stored no output")
    return load_output(output), True
