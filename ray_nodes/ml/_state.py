"""Saving a fitted estimator as tensors plus a JSON configuration, and loading it back.

The file is ``torch.save`` of ``{"format", "config", "state_dict"}``: the configuration is a
JSON string (the estimator's class and params, classes, feature names, target scaling) and
the state dict holds only tensors. It is read with ``torch.load(weights_only=True)``, which
refuses anything but tensors, strings, numbers and plain containers, so loading a file never
runs code from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray_nodes.ml._estimators import (
    LightningClassifier,
    LightningRegressor,
    TabularEstimator,
    params_of,
)
from ray_nodes.ml._net import TabularNet

__all__ = ["FORMAT", "load_estimator", "save_estimator"]

#: The ``format`` entry of a saved file; a loader refuses others.
FORMAT = "raypipe.ml.tabular/1"
_CLASSES: dict[str, type[TabularEstimator]] = {
    "LightningClassifier": LightningClassifier,
    "LightningRegressor": LightningRegressor,
}


def _json_labels(values: np.ndarray) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _config(estimator: TabularEstimator) -> dict[str, Any]:
    params = estimator.get_params()
    params["hidden_layer_sizes"] = [int(s) for s in params["hidden_layer_sizes"]]
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None  # a RandomState object: not reproducible from a file
    if not isinstance(params["devices"], int | str):
        params["devices"] = [int(d) for d in params["devices"]]
    config: dict[str, Any] = {
        "class": type(estimator).__name__,
        "params": params,
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": (
            [str(n) for n in estimator.feature_names_in_]
            if hasattr(estimator, "feature_names_in_")
            else None
        ),
        "n_outputs": (len(estimator.classes_) if isinstance(estimator, LightningClassifier) else 1),
        "history": estimator.history_,
        "n_epochs": int(estimator.n_epochs_),
        "best_epoch": int(estimator.best_epoch_),
        "device": estimator.device_,
        "device_info": estimator.device_info_,
    }
    if isinstance(estimator, LightningClassifier):
        config["classes"] = _json_labels(estimator.classes_)
    if isinstance(estimator, LightningRegressor):
        config["y_mean"], config["y_scale"] = estimator.y_mean_, estimator.y_scale_
    return config


def save_estimator(estimator: TabularEstimator, path: Path | str) -> None:
    """Write a fitted estimator to ``path`` (tensors and a JSON configuration)."""
    state = {k: v.detach().cpu().contiguous() for k, v in estimator.model_.state_dict().items()}
    payload = {"format": FORMAT, "config": json.dumps(_config(estimator)), "state_dict": state}
    torch.save(payload, str(path))


def load_estimator(path: Path | str) -> TabularEstimator:
    """The estimator :func:`save_estimator` wrote, ready to predict (on CPU).

    Raises:
        ValueError: the file is not such a model.
    """
    payload = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    config = json.loads(payload["config"])
    cls = _CLASSES.get(config.get("class", ""))
    if cls is None:
        raise ValueError(f"{path}: unknown estimator class {config.get('class')!r}")
    params = params_of(config["params"])
    estimator = cls(**params)
    net = TabularNet(
        int(config["n_features_in"]),
        int(config["n_outputs"]),
        params["hidden_layer_sizes"],
        activation=params["activation"],
        batch_norm=bool(params["batch_norm"]),
        dropout=float(params["dropout"]),
    )
    net.load_state_dict(payload["state_dict"], strict=True)
    estimator.model_ = net.eval()
    estimator.n_features_in_ = int(config["n_features_in"])
    if config.get("feature_names_in") is not None:
        estimator.feature_names_in_ = np.asarray(config["feature_names_in"], dtype=object)
    estimator.history_ = list(config.get("history") or [])
    estimator.n_epochs_ = int(config.get("n_epochs", 0))
    estimator.best_epoch_ = int(config.get("best_epoch", 0))
    estimator.device_ = str(config.get("device", "cpu"))
    estimator.device_info_ = dict(config.get("device_info") or {})
    if isinstance(estimator, LightningClassifier):
        estimator.classes_ = np.asarray(config["classes"])
    if isinstance(estimator, LightningRegressor):
        estimator.y_mean_ = float(config["y_mean"])
        estimator.y_scale_ = float(config["y_scale"])
    return estimator
