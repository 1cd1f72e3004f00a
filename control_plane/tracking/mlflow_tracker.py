"""The MLflow tracker: every raypipe run as an MLflow run, recorded from one background thread.

The hooks only append to a bounded buffer and return; the thread sends each record through
``mlflow.MlflowClient(tracking_uri)`` (never MLflow's global fluent state: one control plane
records many runs at once), in order per run, retrying a failing call with exponential backoff
until ``retry_for`` runs out. Then the record is given up and the problem is written on the
raypipe run (``Run.tracking.problem``); the run itself never fails because of tracking.

Saved models are logged from a small Ray task (see :mod:`control_plane.tracking.model_logging`)
where the artifact store is, so no model passes through the control plane; each becomes an
MLflow logged model. A run's final status is set once its models are logged.

The scores of the evaluator that evaluated a saved model (the same trainer's output) are
linked to its logged model: written with the model's id when the model was logged first, or
linked once it is (whichever of the two comes last does it, so each pair is linked once; both
happen on the tracker's thread, in order).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.tracking.base import StoreTracking
from control_plane.tracking.model_logging import LoggedModel, log_model, quiet_http_retries
from control_plane.tracking.records import (
    Metric,
    ModelJob,
    experiment_name,
    metrics_of,
    mlflow_status,
    model_evaluators,
    model_jobs,
    run_params,
    run_tags,
    run_url,
)
from ray_nodes.engine import EngineEvent
from ray_nodes.logs import log_text, read_log
from ray_nodes.registry import NodeRegistry, default_registry
from raypipe.v1 import pipeline_spec_pb2, run_pb2

__all__ = ["MlflowTracker", "default_tracking_uri"]

log = logging.getLogger("raypipe.tracking")

#: MLflow's limits per log_batch call.
_BATCH_METRICS = 1000
_BATCH_PARAMS = 100
#: Run.tracking.problem is cut here: later problems are in the log only.
_MAX_PROBLEM = 2000


def default_tracking_uri(data_dir: Path) -> str:
    """The SQLite-backed MLflow store in the data directory (no server needed)."""
    return f"sqlite:///{data_dir.resolve() / 'mlflow.db'}"


@dataclass
class _RunRecord:
    """What the tracker knows of one raypipe run."""

    run_id: str
    spec: pipeline_spec_pb2.PipelineSpec
    info: run_pb2.TrackingInfo
    steps: dict[tuple[str, str], int] = field(default_factory=dict)
    #: model_saver -> the evaluators whose scores its logged model carries.
    evaluators: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: evaluator -> its final metrics (from its terminal event), once it ended.
    final: dict[str, list[Metric]] = field(default_factory=dict)
    #: evaluators whose final metrics have been written to MLflow.
    written: set[str] = field(default_factory=set)
    #: evaluator -> the logged models (ids) its scores go to.
    linked_models: dict[str, list[str]] = field(default_factory=dict)
    pending_models: int = 0
    finish: Callable[[], None] | None = None
    broken: bool = False


@dataclass(frozen=True)
class _Op:
    """One record to send: ``call()`` talks to MLflow; ``what`` names it in problems."""

    run_id: str
    what: str
    call: Callable[[], None]
    last: bool = False


class MlflowTracker:
    """Records runs in MLflow at ``tracking_uri`` (see the module docstring).

    Args:
        tracking_uri: An MLflow tracking URI: ``sqlite:///...``, ``http(s)://server``, ...
        artifact_dir: Where new experiments keep their artifacts (for a local store, so they
            land in the data directory); None lets the server decide.
        retry_for: How long one record is retried before it is given up, in seconds.
        max_buffer: Records waiting at most; beyond it new records are dropped (and the drop
            is written on the run).
        model_task_cpus: The CPUs the Ray task logging a model asks for.
        log_root: The artifact root under which the nodes' logs are (ray_nodes.logs): each
            node attempt's log is attached to the MLflow run when the run ends, as
            ``logs/{node}/attempt-{n}.log``; empty attaches none.
        registry: The node types, to wire evaluators to the models they evaluated; default
            the process-wide registry.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        artifact_dir: str | None = None,
        retry_for: float = 300.0,
        max_buffer: int = 10_000,
        model_task_cpus: float = 0.25,
        registry: NodeRegistry | None = None,
        log_root: str = "",
    ) -> None:
        self.tracking_uri = tracking_uri
        self._log_root = log_root
        self._registry = registry
        self._artifact_dir = artifact_dir
        self._retry_for = retry_for
        self._max_buffer = max_buffer
        self._model_task_cpus = model_task_cpus
        self._store: StoreTracking = lambda run_id, info: None
        self._client: Any = None
        self._runs: dict[str, _RunRecord] = {}
        self._ops: deque[_Op] = deque()
        self._models: dict[Any, tuple[str, ModelJob]] = {}  # ObjectRef -> (run id, job)
        self._cond = threading.Condition()
        self._busy = False  # an op is being sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlflow-tracker", daemon=True)

    # -- hooks (any thread; never block, never raise) -----------------------------------------

    def start(self, store: StoreTracking) -> None:
        """Start the background thread; ``store`` saves a run's TrackingInfo."""
        self._store = store
        quiet_http_retries()
        self._thread.start()

    def run_started(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """Create the MLflow run with the run's tags and parameters (unless switched off)."""
        if spec.tracking.disabled:
            return
        record = self._adopt(run, spec)
        self._put(record.run_id, "the MLflow run", lambda: self._create_run(record, run))

    def run_resumed(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """Go on recording a run whose MLflow run was created before a restart."""
        if spec.tracking.disabled or not run.tracking.run_id:
            return
        self._adopt(run, spec)

    def events(self, run: run_pb2.Run, events: Sequence[EngineEvent]) -> None:
        """Log the metrics the events report and the models saved by them."""
        run_id = run.name.removeprefix("runs/")
        record = self._runs.get(run_id)
        if record is None:
            return
        metrics = metrics_of(events, record.steps)
        for metric in metrics:
            if metric.final and metric.node_id in record.linked_models:
                record.final.setdefault(metric.node_id, []).append(metric)
        if metrics:
            what = f"{len(metrics)} metric value(s)"
            self._put(run_id, what, lambda: self._log_metrics(record, metrics))
        for job in model_jobs(run, record.spec, events):
            submit = functools.partial(self._submit, job, record)
            self._put(run_id, f"the model of node {job.node_id}", submit)

    def run_finished(self, run: run_pb2.Run) -> None:
        """Mirror the terminal state (FINISHED, FAILED, KILLED) once the models are logged."""
        run_id = run.name.removeprefix("runs/")
        record = self._runs.get(run_id)
        if record is None:
            return
        status = mlflow_status(run.state)
        end_ms = int(run.end_time.ToMilliseconds()) if run.HasField("end_time") else None
        if self._log_root:
            self._put(run_id, "the nodes' logs", lambda: self._attach_logs(record, run))
        finish = _Op(
            run_id, f"the final status {status}", lambda: self._finish(record, status, end_ms), True
        )
        self._put_op(finish)

    def close(self, timeout: float = 5.0) -> None:
        """Give pending records up to ``timeout`` seconds, then stop the thread."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(0.1, deadline - time.monotonic()) + 1.0)

    def flush(self, timeout: float) -> bool:
        """For tests: wait until nothing is waiting to be recorded."""
        with self._cond:
            return self._cond.wait_for(self._idle, timeout)

    def _idle(self) -> bool:
        return not self._ops and not self._models and not self._busy

    # -- buffering ----------------------------------------------------------------------------

    def _adopt(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> _RunRecord:
        run_id = run.name.removeprefix("runs/")
        info = run_pb2.TrackingInfo()
        info.CopyFrom(run.tracking)
        info.tracking_uri = self.tracking_uri
        evaluators = model_evaluators(spec, self._registry or default_registry())
        record = _RunRecord(run_id=run_id, spec=spec, info=info, evaluators=evaluators)
        for linked in evaluators.values():
            for evaluator in linked:
                record.linked_models.setdefault(evaluator, [])
        with self._cond:
            self._runs[run_id] = record
        return record

    def pending(self) -> int:
        """How many records wait to go out."""
        with self._cond:
            return len(self._ops)

    def _put(self, run_id: str, what: str, call: Callable[[], None]) -> None:
        self._put_op(_Op(run_id, what, call))

    def _put_op(self, op: _Op) -> None:
        with self._cond:
            if len(self._ops) < self._max_buffer:
                self._ops.append(op)
                self._cond.notify_all()
                return
        self._problem(op.run_id, f"tracking buffer full: {op.what} not recorded")

    # -- the thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._collect_models()
            with self._cond:
                if not self._ops:
                    self._cond.wait(0.2 if self._models else 1.0)
                    continue
                op = self._ops.popleft()
                self._busy = True
            record = self._runs.get(op.run_id)
            if record is not None and not record.broken:
                self._run_op(op, record)
            if record is not None and record.broken and op.last:
                with self._cond:
                    self._runs.pop(op.run_id, None)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _run_op(self, op: _Op, record: _RunRecord) -> None:
        deadline = time.monotonic() + self._retry_for
        delay = 0.25
        while True:
            try:
                op.call()
                return
            except Exception as e:
                if self._stop.is_set() or time.monotonic() + delay > deadline:
                    log.warning("run %s: %s not recorded in MLflow: %s", op.run_id, op.what, e)
                    if not record.info.run_id:
                        record.broken = True  # nothing more can be recorded for this run
                    self._problem(op.run_id, f"{op.what} not recorded in MLflow: {e}")
                    return
                log.info("run %s: MLflow failed (%s); retrying in %.1fs", op.run_id, e, delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 10.0)

    def _problem(self, run_id: str, message: str) -> None:
        record = self._runs.get(run_id)
        if record is None:
            return
        problem = record.info.problem
        if message in problem or len(problem) >= _MAX_PROBLEM:
            return
        problem = "; ".join(p for p in (problem, message) if p)
        if len(problem) > _MAX_PROBLEM:
            problem = problem[: _MAX_PROBLEM - 3] + "..."
        record.info.problem = problem
        self._save(record)

    def _save(self, record: _RunRecord) -> None:
        info = run_pb2.TrackingInfo()
        info.CopyFrom(record.info)
        try:
            self._store(record.run_id, info)
        except Exception:
            log.exception("run %s: storing its tracking info failed", record.run_id)

    # -- MLflow calls (the thread only) -------------------------------------------------------

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self._mlflow()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self._artifact_dir is not None:
            location = (Path(self._artifact_dir) / name.replace("/", "_")).resolve().as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException as e:  # another control plane created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise e
            return str(found.experiment_id)

    def _create_run(self, record: _RunRecord, run: run_pb2.Run) -> None:
        from mlflow.entities import Param

        client = self._mlflow()
        if not record.info.run_id:
            experiment_id = self._experiment_id(experiment_name(run, record.spec))
            created = client.create_run(
                experiment_id,
                start_time=int(run.create_time.ToMilliseconds()) or None,
                tags=run_tags(run),
                run_name=run.display_name or None,
            )
            record.info.run_id = created.info.run_id
            record.info.experiment_id = experiment_id
            record.info.url = run_url(self.tracking_uri, experiment_id, created.info.run_id)
            self._save(record)
        params = [Param(k, v) for k, v in run_params(run, record.spec).items()]
        for i in range(0, len(params), _BATCH_PARAMS):
            client.log_batch(record.info.run_id, params=params[i : i + _BATCH_PARAMS])

    def _log_metrics(self, record: _RunRecord, metrics: Sequence[Metric]) -> None:
        from mlflow.entities import Metric as MlflowMetric

        values: list[MlflowMetric] = []
        for m in metrics:
            # An evaluator's final scores go to the logged models already known to be its own.
            models = record.linked_models.get(m.node_id, ()) if m.final else ()
            values.extend(
                MlflowMetric(m.key, m.value, m.timestamp_ms, m.step, model_id=model_id)
                for model_id in models or (None,)
            )
        for i in range(0, len(values), _BATCH_METRICS):
            self._mlflow().log_batch(record.info.run_id, metrics=values[i : i + _BATCH_METRICS])
        record.written.update(m.node_id for m in metrics if m.final)

    def _link_metrics(self, record: _RunRecord, model_id: str, evaluators: Sequence[str]) -> None:
        """Link the scores already written of ``evaluators`` to the logged model ``model_id``
        (those that MLflow's ``log_model`` did not link itself, being there before it)."""
        from mlflow.entities import Metric as MlflowMetric

        client = self._mlflow()
        linked = {m.key for m in client.get_logged_model(model_id).metrics or ()}
        values = [
            MlflowMetric(m.key, m.value, m.timestamp_ms, m.step, model_id=model_id)
            for e in evaluators
            if e in record.written
            for m in record.final.get(e, ())
            if m.key not in linked
        ]
        if values:
            client.log_batch(record.info.run_id, metrics=values)

    def _submit(self, job: ModelJob, record: _RunRecord) -> None:
        import ray

        task = ray.remote(num_cpus=self._model_task_cpus, max_retries=1)(log_model)
        name = f"mlflow/{record.run_id}/{job.node_id}"
        ref = task.options(name=name).remote(
            job, self.tracking_uri, record.info.run_id, self._retry_for
        )
        with self._cond:
            self._models[ref] = (record.run_id, job)
            record.pending_models += 1

    def _collect_models(self) -> None:
        if not self._models:
            return
        import ray

        refs = list(self._models)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            run_id, job = self._models[ref]
            record = self._runs[run_id]
            try:
                logged: LoggedModel = ray.get(ref)
            except Exception as e:
                cause = getattr(e, "cause", None) or e
                self._problem(run_id, f"the model of node {job.node_id} not logged: {cause}")
            else:
                self._logged(record, logged)
            with self._cond:
                del self._models[ref]
                record.pending_models -= 1
                if record.pending_models == 0 and record.finish is not None:
                    finish, record.finish = record.finish, None
                    self._ops.appendleft(_Op(run_id, "the final status", finish, True))
                    self._cond.notify_all()

    def _logged(self, record: _RunRecord, logged: LoggedModel) -> None:
        """A model is logged: note it on the run, and link its evaluators' scores."""
        record.info.model_uris.append(logged.model_uri)
        record.info.models.add(
            node_id=logged.node_id,
            model_id=logged.model_id,
            model_uri=logged.model_uri,
            registered_model=logged.registered,
        )
        if logged.registered:
            record.info.registered_models.append(logged.registered)
        if logged.note:
            log.info("run %s: model of %s: %s", record.run_id, logged.node_id, logged.note)
        self._save(record)
        evaluators = record.evaluators.get(logged.node_id, ())
        for evaluator in evaluators:
            record.linked_models[evaluator].append(logged.model_id)
        if evaluators:
            link = functools.partial(self._link_metrics, record, logged.model_id, evaluators)
            self._put(record.run_id, f"the scores of the model of node {logged.node_id}", link)

    def _attach_logs(self, record: _RunRecord, run: run_pb2.Run) -> None:
        run_id = run.name.removeprefix("runs/")
        for node in run.nodes:
            for attempt in range(1, node.attempt + 1):
                page = read_log(self._log_root, run_id, node.node_id, attempt, limit=1 << 40)
                if page.lines:
                    self._mlflow().log_text(
                        record.info.run_id,
                        log_text(page.lines),
                        f"logs/{node.node_id}/attempt-{attempt}.log",
                    )

    def _finish(self, record: _RunRecord, status: str, end_ms: int | None) -> None:
        with self._cond:
            if record.pending_models:  # set once the models are logged
                record.finish = lambda: self._finish(record, status, end_ms)
                return
        self._mlflow().set_terminated(record.info.run_id, status, end_time=end_ms)
        with self._cond:
            self._runs.pop(record.run_id, None)
