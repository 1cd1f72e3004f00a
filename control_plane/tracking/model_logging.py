"""Logging a saved model into an MLflow run, from a Ray task (where the model and data are).

The task loads the model the ``model_saver`` node wrote, in its native format
(:func:`ray_nodes.model_saver.load_model`, which checks the SHA-256 and never unpickles), takes
a few test rows of the split the model was trained from as the input example, infers the
signature from them and the model's predictions, writes the model with the matching MLflow
flavour into a temporary directory and uploads it as the run's artifacts ``{node_id}/``:
``mlflow.pyfunc.load_model("runs:/{run_id}/{node_id}")`` serves it. Only the MLflow client
is used (no fluent global state), so the MLflow run's status is left to the control plane.
"""

from __future__ import annotations

import importlib
import os
import random
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
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
    """Where a model went: its ``runs:/`` URI, the registered ``name/version`` (or empty),
    and a note when the logged model differs from the native one."""

    model_uri: str
    registered: str = ""
    note: str = ""


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


def _save(model: Any, example: Any, path: Path, register_note: list[str]) -> None:
    """Write ``model`` with its flavour into ``path`` (a directory that must not exist)."""
    import numpy as np
    from mlflow.models import infer_signature

    module_name, package = FLAVOURS[model.backend]
    flavour = importlib.import_module(module_name)
    pins = [f"{package}=={metadata.version(package)}"]
    if model.backend == "lightning":
        import torch

        # The network itself: pyfunc feeds it float32 features and returns its outputs
        # (class logits, or the standardized regression value), not the estimator's labels.
        net = model.estimator.model_
        inputs = np.asarray(example, dtype=np.float32)
        with torch.no_grad():
            outputs = net(torch.from_numpy(inputs)).numpy()
        signature = infer_signature(inputs, outputs)
        flavour.save_model(
            net, path, signature=signature, input_example=inputs, pip_requirements=pins
        )
        register_note.append("pytorch flavour: pyfunc returns the network's raw outputs")
        return
    estimator = model.estimator
    signature = infer_signature(example, np.asarray(estimator.predict(example)))
    flavour.save_model(
        estimator, path, signature=signature, input_example=example, pip_requirements=pins
    )
    if model.label_encoded:
        register_note.append(f"predicts class indices; the labels are {list(model.classes or ())}")


def _register(client: Any, name: str, source: str, run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id)
    return f"{name}/{version.version}"


def _log_once(job: ModelJob, tracking_uri: str, run_id: str) -> LoggedModel:
    from mlflow import MlflowClient

    from ray_nodes.model_saver import load_model

    model = load_model(job.model_dir)
    if model.backend not in FLAVOURS:
        raise ValueError(f"no MLflow flavour for the {model.backend!r} backend")
    example = _example(job, model)
    notes: list[str] = []
    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="raypipe-mlflow-") as tmp:
        local = Path(tmp) / job.node_id
        _save(model, example, local, notes)
        client.log_artifacts(run_id, str(local), artifact_path=job.node_id)
    if notes:
        client.set_tag(run_id, f"raypipe.model_note.{job.node_id}", "; ".join(notes))
    registered = ""
    if job.register_as:
        source = f"{client.get_run(run_id).info.artifact_uri}/{job.node_id}"
        registered = _register(client, job.register_as, source, run_id)
    return LoggedModel(f"runs:/{run_id}/{job.node_id}", registered, "; ".join(notes))


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
