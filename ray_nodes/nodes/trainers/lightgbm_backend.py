"""The ``lightgbm`` trainer backend: ``LGBMClassifier`` / ``LGBMRegressor``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ray_nodes.data import TrainedModel
from ray_nodes.nodes.trainers import FitResult, TrainContext, TrainerBackend, integral_floats_to_int

__all__ = ["BoosterModel", "LightGBMBackend"]

_THREADS = "set by the node from its CPUs; set resources.num_cpus instead"
_SEED = "use the node's random_state param"


def _classes(task: str) -> Any:
    import lightgbm

    return lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor


class BoosterModel:
    """A LightGBM model loaded from its text format, predicting as the scikit-learn wrapper
    that trained it did: the same probabilities, and labels from ``classes``."""

    def __init__(self, booster: Any, task: str, classes: Sequence[Any] | None = None) -> None:
        self.booster = booster
        self.task = task
        self.classes_ = None if classes is None else np.asarray(classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        result = np.asarray(self.booster.predict(X))
        if result.ndim == 1:  # binary: the probability of the second class
            return np.vstack((1.0 - result, result)).transpose()
        return result

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "classification":
            indices = np.argmax(self.predict_proba(X), axis=1)
            return indices if self.classes_ is None else self.classes_[indices]
        return np.asarray(self.booster.predict(X))

    @property
    def feature_importances_(self) -> np.ndarray:
        return np.asarray(self.booster.feature_importance(importance_type="split"))


class LightGBMBackend(TrainerBackend):
    """LightGBM through its scikit-learn API.

    Hyperparameters are the wrapper's arguments (``n_estimators``, ``num_leaves``,
    ``learning_rate``, ...) and any native LightGBM parameter or alias
    (``feature_fraction``, ``min_data_in_leaf``, ...). ``n_jobs`` is the node's CPUs,
    ``random_state`` the node's seed, and ``verbose`` defaults to -1 (quiet). Class labels
    other than ``0..k-1`` are encoded for training and decoded on prediction. Training
    reports the last iteration's training metric (``train_binary_logloss``, ``train_l2``,
    ...). Saved in LightGBM's text format; loaded with ``lightgbm.Booster``.
    """

    name: ClassVar[str] = "lightgbm"
    library: ClassVar[str] = "lightgbm"
    formats: ClassVar[tuple[str, ...]] = ("txt",)
    # The wrapper encodes labels itself but not those of eval_X/eval_y, which hold the
    # training labels here; the node encodes them for both.
    needs_encoded_labels: ClassVar[bool] = True
    reserved: ClassVar[Mapping[str, str]] = {
        key: _THREADS for key in ("n_jobs", "num_threads", "num_thread", "nthread", "nthreads")
    } | {key: _SEED for key in ("random_state", "seed", "random_seed")}

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        from lightgbm.basic import _ConfigAliases

        aliases = _ConfigAliases._get_all_param_aliases()
        native = set(aliases) | {alias for names in aliases.values() for alias in names}
        return native | set(_classes(task)().get_params())

    def estimator_name(self, task: str, estimator: str | None) -> str:
        return "LGBMClassifier" if task == "classification" else "LGBMRegressor"

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
        if not {"verbose", "verbosity"} & set(params):
            params["verbose"] = -1
        return _classes(task)(n_jobs=n_threads, random_state=random_state, **params)

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        # The training set as an eval set gives the training metric per iteration; LightGBM
        # 4.6 renamed the argument.
        if "eval_X" in inspect.signature(estimator.fit).parameters:
            estimator.fit(X, y, eval_X=(X,), eval_y=(y,))
        else:
            estimator.fit(X, y, eval_set=[(X, y)])
        metrics: dict[str, float] = {}
        # One eval set, the training data; LightGBM names it "training" or "valid_0".
        results: dict[str, Any] = next(iter(estimator.evals_result_.values()), {})
        for metric, values in results.items():
            if len(values):
                metrics[f"train_{metric}"] = float(values[-1])
        metrics["boosting_rounds"] = float(estimator.booster_.current_iteration())
        return FitResult(estimator, metrics)

    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        estimator = model.estimator
        booster = estimator.booster if isinstance(estimator, BoosterModel) else estimator.booster_
        booster.save_model(str(path))

    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(path))
        # Labels the node encoded are decoded by TrainedModel; the model gives indices then.
        classes = None if manifest.get("label_encoded") else manifest.get("classes")
        return BoosterModel(booster, str(manifest["task"]), classes)
