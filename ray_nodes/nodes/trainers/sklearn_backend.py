"""The ``sklearn`` trainer backend: any scikit-learn classifier or regressor, by class name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ray_nodes.data import TrainedModel
from ray_nodes.node import ParamProblem
from ray_nodes.nodes.trainers import FitResult, TrainContext, TrainerBackend, integral_floats_to_int

__all__ = ["TRUSTED_MODULES", "SklearnBackend", "estimator_classes"]

#: Top-level modules whose types a saved scikit-learn model may contain. skops rebuilds
#: objects without pickle; types from elsewhere (a user's module, say) are refused on load.
TRUSTED_MODULES = ("sklearn", "numpy", "scipy", "builtins", "collections")


@functools.cache
def estimator_classes(task: str) -> dict[str, type]:
    """Class name -> class of scikit-learn's public classifiers (``classification``) or
    regressors (``regression``). Names are looked up here, never imported from a string."""
    from sklearn.utils import all_estimators

    kind = "classifier" if task == "classification" else "regressor"
    return dict(all_estimators(type_filter=kind))


def _required_args(cls: type) -> list[str]:
    """Constructor arguments without a default (a meta-estimator's ``estimators``)."""
    return [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _coerce(cls: type, key: str, value: Any) -> tuple[Any, str | None]:
    """The value scikit-learn accepts for ``key`` (``6.0`` becomes ``6`` where an int is
    wanted; ``1.0`` stays a float where a fraction is meant) and the error if none."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    constraints = getattr(cls, "_parameter_constraints", {})
    whole = integral_floats_to_int(value)
    if isinstance(value, list | dict):
        # Lists (hidden_layer_sizes) and dicts (class_weight) pass the "array-like" and
        # "dict" constraints either way, but their items are meant as ints when whole.
        return whole, None
    if key not in constraints:
        return whole if isinstance(value, float) else value, None
    error = None
    for candidate in (value, whole) if whole is not value else (value,):
        try:
            validate_parameter_constraints(
                {key: constraints[key]}, {key: candidate}, caller_name=cls.__name__
            )
            return candidate, None
        except InvalidParameterError as exc:
            error = error or str(exc)
    return value, error


class SklearnBackend(TrainerBackend):
    """Any scikit-learn estimator, named by its class in the ``estimator`` param.

    The name is looked up among scikit-learn's public classifiers (task ``classification``)
    or regressors (``regression``), never imported from a user string. Hyperparameters are
    the class's constructor arguments, checked at validation against its ``get_params``
    names and scikit-learn's own parameter constraints. ``n_jobs`` (where the class has it)
    is the node's CPUs, ``random_state`` (where it has it) the node's seed. Training reports
    ``train_accuracy`` or ``train_r2``. Saved with skops, which rebuilds the model without
    pickle; loading accepts only scikit-learn, numpy and scipy types.
    """

    name: ClassVar[str] = "sklearn"
    library: ClassVar[str] = "scikit-learn"
    formats: ClassVar[tuple[str, ...]] = ("skops",)
    takes_estimator: ClassVar[bool] = True
    reserved: ClassVar[Mapping[str, str]] = {
        "n_jobs": "set by the node from its CPUs; set resources.num_cpus instead",
        "random_state": "use the node's random_state param",
    }

    def check(
        self, task: str, estimator: str | None, hyperparameters: Mapping[str, Any]
    ) -> list[ParamProblem]:
        import difflib

        if not estimator:
            return [ParamProblem("estimator", "required with backend sklearn (a class name)")]
        classes = estimator_classes(task)
        cls = classes.get(estimator)
        if cls is None:
            other = "regression" if task == "classification" else "classification"
            if estimator in estimator_classes(other):
                return [ParamProblem("estimator", f"{estimator} is for {other}, not {task}")]
            close = difflib.get_close_matches(estimator, classes, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            return [ParamProblem("estimator", f"not a scikit-learn {task} estimator{hint}")]
        problems = super().check(task, estimator, hyperparameters)
        flagged = {p.path for p in problems}
        for key, value in hyperparameters.items():
            if f"hyperparameters.{key}" in flagged:
                continue
            _, error = _coerce(cls, key, value)
            if error is not None:
                problems.append(ParamProblem(f"hyperparameters.{key}", error))
        missing = [a for a in _required_args(cls) if a not in hyperparameters]
        if missing:
            problems.append(
                ParamProblem(
                    "estimator",
                    f"{estimator} needs {missing}, which take estimator objects that a spec "
                    "cannot hold",
                )
            )
        return problems

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        cls = estimator_classes(task).get(estimator or "")
        return None if cls is None else set(cls._get_param_names())  # type: ignore[attr-defined]

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
        classes = estimator_classes(task)
        if estimator not in classes:
            raise ValueError(f"{estimator!r} is not a scikit-learn {task} estimator")
        cls = classes[estimator]
        params = {key: _coerce(cls, key, value)[0] for key, value in hyperparameters.items()}
        names = set(cls._get_param_names())  # type: ignore[attr-defined]
        if "n_jobs" in names and n_threads > 1:
            # n_jobs=None already means one thread; leaving it unset at 1 also keeps clear of
            # classes that deprecate it (LogisticRegression warns whenever it is set).
            params["n_jobs"] = n_threads
        if "random_state" in names:
            params["random_state"] = random_state
        return cls(**params)

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        estimator.fit(X, y)
        name = "train_accuracy" if ctx.task == "classification" else "train_r2"
        return FitResult(estimator, {name: float(estimator.score(X, y))})

    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        import skops.io

        skops.io.dump(model.estimator, str(path))

    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=str(path))
        refused = [t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_MODULES]
        if refused:
            raise ValueError(f"{path.name} holds types outside scikit-learn/numpy/scipy: {refused}")
        return skops.io.load(str(path), trusted=untrusted)
