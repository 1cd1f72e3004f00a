"""Logging a saved model into an MLflow run as an MLflow 3 logged model, from a Ray task.

The task loads the model the ``model_saver`` node wrote, in its native format
(:func:`ray_nodes.nodes.model_saver.load_model`, which checks the SHA-256 and never unpickles), takes
a few test rows of the split the model was trained from as the input example, infers the
signature from them and the model's predictions, and logs it with the matching flavour's own
``mlflow.<flavour>.log_model(..., name=<node id>)`` into the raypipe run's MLflow run. MLflow
then creates the LoggedModel (its ``model_id``, source run, the run's params, and the run's
metrics recorded so far, as ``log_model`` in a run always links them): the experiment's Models
tab and ``mlflow.search_logged_models`` find it, ``models:/{model_id}`` and
``runs:/{run_id}/{node_id}`` both serve it. ``register_as`` registers the logged model's URI.

``log_model`` works on MLflow's fluent state, so the task resumes the run for the call and
leaves it RUNNING afterwards (its final status is the control plane's to set, once every model
is logged), and gives the worker's tracking URI back. A retry after a partial failure finds
the READY model of the node that an earlier attempt logged, and the version that it
registered, instead of logging or registering twice.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from control_plane.tracking.records import ModelJob

__all__ = ["FLAVOURS", "LoggedModel", "log_model", "quiet_http_retries"]

#: The MLflow flavour module and the pip package pinned for each trainer backend.
FLAVOURS: dict[str, tuple[str, str]] = {
    "xgboost": ("mlflow.xgboost", "xgboost"),
    "lightgbm": ("mlflow.lightgbm", "lightgbm"),
    "catboost": ("mlflow.catboost", "catboost"),
    "sklearn": ("mlflow.sklearn", "scikit-learn"),
    "lightning": ("mlflow.pytorch", "torch"),
}
#: Rows of the test split used as the input example.
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class LoggedModel:
    """Where a model went.

    Attributes:
        node_id: The model_saver node (the logged model's name).
        model_id: The MLflow logged model's id.
        registered: The registered ``name/version``, or empty.
        note: How the logged model differs from the native one, or empty.
    """

    node_id: str
    model_id: str
    registered: str = ""
    note: str = ""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"


def quiet_http_retries() -> None:
    """Let our own retry (with backoff and a deadline) decide, not MLflow's HTTP client, which
    would otherwise block for minutes retrying an unreachable server."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def _example(job: ModelJob, model: Any) -> Any:
    import pandas as pd

    from ray_nodes.engine.artifacts import load_output

    if job.example is not None:
        split = load_output(job.example)
        frame = getattr(split, "X_test", None)
        if isinstance(frame, pd.DataFrame) and len(frame):
            return model.features(frame.head(EXAMPLE_ROWS)).reset_index(drop=True)
    if model.input_example:  # the rows the trainer kept (the split was not stored)
        return pd.DataFrame(list(model.input_example), columns=list(model.feature_names))
    # A model saved before trainers kept rows: one row of zeros over its features.
    return pd.DataFrame([[0.0] * len(model.feature_names)], columns=list(model.feature_names))


@contextlib.contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``tracking_uri``, and given back afterwards: the fluent
    ``log_model`` and the registry's resolution of ``models:/`` sources go by it."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def _resumed(run_id: str) -> Iterator[None]:
    """The MLflow run ``run_id`` as the fluent active run, for ``log_model``; left RUNNING."""
    import mlflow

    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run(status="RUNNING")


def _log(job: ModelJob, model: Any, example: Any, notes: list[str]) -> str:
    """Log ``model`` with its flavour into the active run; returns the logged model's id."""
    import numpy as np
    from mlflow.models import infer_signature

    module_name, package = FLAVOURS[model.backend]
    flavour = importlib.import_module(module_name)
    options: dict[str, Any] = {
        "name": job.node_id,
        "pip_requirements": [f"{package}=={metadata.version(package)}"],
        "tags": {"raypipe.node": job.node_id, "raypipe.backend": model.backend},
    }
    if model.backend == "lightning":
        import torch

        # The network itself: pyfunc feeds it float32 features and returns its outputs
        # (class logits, or the standardized regression value), not the estimator's labels.
        net = model.estimator.model_
        inputs = np.asarray(example, dtype=np.float32)
        with torch.no_grad():
            outputs = net(torch.from_numpy(inputs)).numpy()
        signature = infer_signature(inputs, outputs)
        notes.append("pytorch flavour: pyfunc returns the network's raw outputs")
        info = flavour.log_model(net, signature=signature, input_example=inputs, **options)
    else:
        estimator = model.estimator
        signature = infer_signature(example, np.asarray(estimator.predict(example)))
        if model.label_encoded:
            notes.append(f"predicts class indices; the labels are {list(model.classes or ())}")
        info = flavour.log_model(estimator, signature=signature, input_example=example, **options)
    return str(info.model_id)


def _logged_before(client: Any, experiment_id: str, run_id: str, node_id: str) -> str:
    """The id of the READY model of ``node_id`` an earlier attempt logged in the run, or ""."""
    from mlflow.entities import LoggedModelStatus

    found = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"name = '{node_id}' AND source_run_id = '{run_id}'",
    )
    ready = [m for m in found if m.status == LoggedModelStatus.READY]
    return str(ready[0].model_id) if ready else ""


def _register(client: Any, name: str, model_id: str, run_id: str) -> str:
    """Register ``models:/{model_id}`` as ``name``, once: a retry finds its version."""
    from mlflow.exceptions import MlflowException

    source = f"models:/{model_id}"
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    for version in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'"):
        if version.source == source:
            return f"{name}/{version.version}"
    version = client.create_model_version(name, source, run_id=run_id, model_id=model_id)
    return f"{name}/{version.version}"


def _log_once(job: ModelJob, tracking_uri: str, run_id: str) -> LoggedModel:
    from mlflow import MlflowClient

    from ray_nodes.nodes.model_saver import load_model

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    model_id = _logged_before(client, experiment_id, run_id, job.node_id)
    notes: list[str] = []
    if not model_id:
        model = load_model(job.model_dir)
        if model.backend not in FLAVOURS:
            raise ValueError(f"no MLflow flavour for the {model.backend!r} backend")
        example = _example(job, model)
        with _tracking(tracking_uri), _resumed(run_id):
            model_id = _log(job, model, example, notes)
        if notes:
            note = "; ".join(notes)
            client.set_tag(run_id, f"raypipe.model_note.{job.node_id}", note)
            client.set_logged_model_tags(model_id, {"raypipe.model_note": note})
    registered = ""
    if job.register_as:
        with _tracking(tracking_uri):
            registered = _register(client, job.register_as, model_id, run_id)
    return LoggedModel(job.node_id, model_id, registered, "; ".join(notes))


def log_model(job: ModelJob, tracking_uri: str, run_id: str, retry_for: float) -> LoggedModel:
    """Log ``job``'s model into MLflow run ``run_id``; retried with backoff for ``retry_for``
    seconds while the tracking store fails (a model that cannot load fails at once).

    Raises:
        ValueError: the model cannot be loaded or has no MLflow flavour.
        Exception: the tracking store still failed when ``retry_for`` ran out.
    """
    quiet_http_retries()
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        try:
            return _log_once(job, tracking_uri, run_id)
        except (ValueError, FileNotFoundError, KeyError):
            raise
        except Exception:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 10.0)
