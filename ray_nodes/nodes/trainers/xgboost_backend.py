"""The ``xgboost`` trainer backend: ``XGBClassifier`` / ``XGBRegressor``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ray_nodes.data import TrainedModel
from ray_nodes.nodes.trainers import FitResult, TrainContext, TrainerBackend, integral_floats_to_int

__all__ = ["XGBoostBackend"]

_THREADS = "set by the node from its CPUs; set resources.num_cpus instead"
_SEED = "use the node's random_state param"


def _classes(task: str) -> Any:
    import xgboost

    return xgboost.XGBClassifier if task == "classification" else xgboost.XGBRegressor


class XGBoostBackend(TrainerBackend):
    """XGBoost through its scikit-learn API.

    Hyperparameters are the wrapper's constructor arguments (``n_estimators``,
    ``max_depth``, ``learning_rate``, ``tree_method``, ...). ``n_jobs`` is the node's CPUs,
    ``random_state`` the node's seed; on a node given a GPU, ``device`` defaults to ``cuda``.
    Class labels other than ``0..k-1`` are encoded for XGBoost and decoded on prediction.
    Training reports the last round's training metric (``train_logloss``, ``train_rmse``,
    ...), computed from XGBoost's prediction cache. Saved as XGBoost JSON (or UBJ).
    """

    name: ClassVar[str] = "xgboost"
    library: ClassVar[str] = "xgboost"
    formats: ClassVar[tuple[str, ...]] = ("json", "ubj")
    needs_encoded_labels: ClassVar[bool] = True
    reserved: ClassVar[Mapping[str, str]] = {
        "n_jobs": _THREADS,
        "nthread": _THREADS,
        "random_state": _SEED,
        "seed": _SEED,
        "callbacks": "Python callbacks cannot be given in a spec",
    }

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        return set(_classes(task)().get_params())

    def estimator_name(self, task: str, estimator: str | None) -> str:
        return "XGBClassifier" if task == "classification" else "XGBRegressor"

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
        if gpu_ids:
            params.setdefault("device", "cuda")
        return _classes(task)(n_jobs=n_threads, random_state=random_state, **params)

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        # The training set as its own eval set costs little (XGBoost reuses the cached
        # predictions of the training matrix) and gives the training metric per round.
        estimator.fit(X, y, eval_set=[(X, y)], verbose=False)
        metrics: dict[str, float] = {}
        for metric, values in estimator.evals_result().get("validation_0", {}).items():
            if values:
                metrics[f"train_{metric}"] = float(values[-1])
        booster = estimator.get_booster()
        metrics["boosting_rounds"] = float(booster.num_boosted_rounds())
        return FitResult(estimator, metrics)

    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        model.estimator.save_model(str(path))

    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        estimator = _classes(str(manifest["task"]))()
        estimator.load_model(str(path))
        return estimator
