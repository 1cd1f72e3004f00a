"""The ``catboost`` trainer backend: ``CatBoostClassifier`` / ``CatBoostRegressor``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from ray_nodes.data import TrainedModel
from ray_nodes.nodes.trainers import FitResult, TrainContext, TrainerBackend, integral_floats_to_int

__all__ = ["CatBoostBackend"]

_THREADS = "set by the node from its CPUs; set resources.num_cpus instead"
_SEED = "use the node's random_state param"
_QUIET_KEYS = {"verbose", "silent", "logging_level", "verbose_eval", "metric_period"}


def _classes(task: str) -> Any:
    import catboost

    return catboost.CatBoostClassifier if task == "classification" else catboost.CatBoostRegressor


class CatBoostBackend(TrainerBackend):
    """CatBoost.

    Hyperparameters are the constructor's arguments (``iterations``, ``depth``,
    ``learning_rate``, ``l2_leaf_reg``, ...). ``thread_count`` is the node's CPUs,
    ``random_seed`` the node's seed; training is quiet and writes no ``catboost_info``
    directory unless the hyperparameters say otherwise. Text and categorical feature columns
    are passed as ``cat_features`` unless given. On a node given GPUs, ``task_type`` defaults
    to ``GPU``. Training reports the final training loss (``train_logloss``,
    ``train_rmse``, ...). Saved as ``.cbm``.
    """

    name: ClassVar[str] = "catboost"
    library: ClassVar[str] = "catboost"
    formats: ClassVar[tuple[str, ...]] = ("cbm",)
    reserved: ClassVar[Mapping[str, str]] = {
        "thread_count": _THREADS,
        "random_seed": _SEED,
        "random_state": _SEED,
    }

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        return set(inspect.signature(_classes(task).__init__).parameters) - {"self", "kwargs"}

    def estimator_name(self, task: str, estimator: str | None) -> str:
        return "CatBoostClassifier" if task == "classification" else "CatBoostRegressor"

    def make_estimator(
        self,
        task: str,
        hyperparameters: Mapping[str, Any],
        *,
        estimator: str | None,
        random_state: int | None,
        n_threads: int,
        gpu_ids: tuple[int, ...],
    ) -> Any:
        params = integral_floats_to_int(dict(hyperparameters))
        params.setdefault("allow_writing_files", False)
        if not _QUIET_KEYS & set(params):
            params["verbose"] = False
        if gpu_ids and "task_type" not in params:
            params["task_type"] = "GPU"
            params.setdefault("devices", ":".join(str(i) for i in range(len(gpu_ids))))
        return _classes(task)(thread_count=n_threads, random_seed=random_state, **params)

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        cat_features = None
        if estimator.get_params().get("cat_features") is None and isinstance(X, pd.DataFrame):
            text = [
                c
                for c in X.columns
                if not pd.api.types.is_numeric_dtype(X[c].dtype)
                or isinstance(X[c].dtype, pd.CategoricalDtype)
            ]
            cat_features = text or None
        estimator.fit(X, y, cat_features=cat_features)
        metrics = {
            f"train_{name.lower()}": float(value)
            for name, value in estimator.get_best_score().get("learn", {}).items()
        }
        metrics["boosting_rounds"] = float(estimator.tree_count_)
        return FitResult(estimator, metrics)

    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        model.estimator.save_model(str(path), format=fmt)

    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        estimator = _classes(str(manifest["task"]))()
        estimator.load_model(str(path), format=fmt)
        return estimator
