"""Trainer backends of the ``model_trainer`` node: one module per library, one interface.

A backend turns the node's params into a fitted estimator and knows its library's native
file format. The node does everything common (reading the split, label handling, thread
counts, seeds, metrics); a backend only does what differs between libraries:

* :meth:`TrainerBackend.check` finds bad params at validation time (unknown or malformed
  hyperparameters, a missing or unknown estimator) with their field paths;
* :meth:`~TrainerBackend.make_estimator` builds an unfitted estimator with the node's seed,
  thread count (its CPUs) and GPUs (the ids Ray assigned; Ray has already set
  ``CUDA_VISIBLE_DEVICES``, so device indices start at 0);
* :meth:`~TrainerBackend.fit` fits it, reporting progress through the context, and returns
  training metrics;
* :meth:`~TrainerBackend.feature_importances`, :meth:`~TrainerBackend.save` and
  :meth:`~TrainerBackend.load` serve the evaluator and the saver. ``load`` reads only the
  library's own format (never pickle), so a saved model can be loaded without trusting it.

Every estimator a backend returns has scikit-learn's ``predict`` (and ``predict_proba`` for
classifiers).

Adding a backend (the ``lightning`` one of the deep-learning issue, say) is a module with a
:class:`TrainerBackend` subclass plus one line in :data:`BACKENDS`; the trainer's parameter
schema, the saver's formats and the evaluator pick it up from there.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ray_nodes.data import TrainedModel
from ray_nodes.node import ParamProblem

__all__ = [
    "BACKENDS",
    "FitResult",
    "TrainContext",
    "TrainerBackend",
    "all_formats",
    "backend_names",
    "get_backend",
    "integral_floats_to_int",
    "unknown_key_problems",
]

#: Backend name -> ``"module:Class"``. Import paths rather than classes keep the control
#: plane from importing every ML library to list the names.
BACKENDS: dict[str, str] = {
    "xgboost": "ray_nodes.nodes.trainers.xgboost_backend:XGBoostBackend",
    "lightgbm": "ray_nodes.nodes.trainers.lightgbm_backend:LightGBMBackend",
    "catboost": "ray_nodes.nodes.trainers.catboost_backend:CatBoostBackend",
    "sklearn": "ray_nodes.nodes.trainers.sklearn_backend:SklearnBackend",
    "lightning": "ray_nodes.nodes.trainers.lightning_backend:LightningBackend",
}


@dataclass(frozen=True)
class TrainContext:
    """What a backend may use while it fits.

    Attributes:
        task: ``classification`` or ``regression``.
        random_state: The node's seed.
        n_threads: Threads the library may use: the node's CPUs (at least 1).
        gpu_ids: GPU ids Ray assigned to the node (empty on CPU). Ray sets
            ``CUDA_VISIBLE_DEVICES`` to them, so the library sees devices ``0..len-1``.
        report: Sends progress (an epoch's losses, say) to watchers of the run.
        work_dir: A scratch directory for checkpoints, or None.
    """

    task: str
    random_state: int | None = None
    n_threads: int = 1
    gpu_ids: tuple[int, ...] = ()
    report: Callable[[Mapping[str, float], str], None] = field(
        default=lambda metrics, message: None
    )
    work_dir: Path | None = None


@dataclass(frozen=True)
class FitResult:
    """A fitted estimator and what fitting measured (``train_logloss``, ``epochs``, ...)."""

    estimator: Any
    metrics: dict[str, float] = field(default_factory=dict)


class TrainerBackend(ABC):
    """One library's way of training, saving and loading a model."""

    #: The ``backend`` param value.
    name: ClassVar[str]
    #: The distribution whose version goes into model manifests.
    library: ClassVar[str]
    #: File formats ``save`` writes, the native (default) one first; each is also the file
    #: suffix.
    formats: ClassVar[tuple[str, ...]]
    #: Whether the ``estimator`` param applies (it names a class, as for ``sklearn``).
    takes_estimator: ClassVar[bool] = False
    #: Whether classification labels must be ``0..k-1`` (the node encodes them if not).
    needs_encoded_labels: ClassVar[bool] = False
    #: Hyperparameters the node sets itself -> what to do instead.
    reserved: ClassVar[Mapping[str, str]] = {}

    def library_version(self) -> str:
        """The installed version of :attr:`library`."""
        try:
            return metadata.version(self.library)
        except metadata.PackageNotFoundError:
            return "unknown"

    def check(
        self, task: str, estimator: str | None, hyperparameters: Mapping[str, Any]
    ) -> list[ParamProblem]:
        """Problems with the params, paths relative to the node's params. Default: the
        reserved hyperparameters and :meth:`known_hyperparameters`."""
        problems = [
            ParamProblem(f"hyperparameters.{key}", hint)
            for key, hint in self.reserved.items()
            if key in hyperparameters
        ]
        known = self.known_hyperparameters(task, estimator)
        if known is not None:
            rest = {k: v for k, v in hyperparameters.items() if k not in self.reserved}
            problems += unknown_key_problems(rest, known, f"{self.name} hyperparameter")
        return problems

    def known_hyperparameters(self, task: str, estimator: str | None) -> set[str] | None:
        """Every accepted hyperparameter name, or None when the library cannot tell."""
        return None

    def estimator_name(self, task: str, estimator: str | None) -> str:
        """The class name of the estimator :meth:`make_estimator` builds."""
        return estimator or ""

    @abstractmethod
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
        """An unfitted estimator."""

    def fit(self, estimator: Any, X: Any, y: Any, ctx: TrainContext) -> FitResult:
        """Fit ``estimator`` on ``(X, y)``. Default: ``estimator.fit(X, y)``."""
        return FitResult(estimator.fit(X, y))

    def feature_importances(self, model: TrainedModel) -> dict[str, float] | None:
        """Feature -> importance, or None when the model has none. Default: scikit-learn's
        ``feature_importances_``, else the mean absolute ``coef_``."""
        estimator = model.estimator
        values = getattr(estimator, "feature_importances_", None)
        if values is None and getattr(estimator, "coef_", None) is not None:
            coef = np.abs(np.asarray(estimator.coef_, dtype=np.float64))
            values = coef.reshape(-1, coef.shape[-1]).mean(axis=0) if coef.ndim > 1 else coef
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64).ravel()
        if len(values) != len(model.feature_names):
            return None
        return {name: float(v) for name, v in zip(model.feature_names, values, strict=True)}

    @abstractmethod
    def save(self, model: TrainedModel, path: Path, fmt: str) -> None:
        """Write the fitted estimator to ``path`` in format ``fmt`` (one of :attr:`formats`)."""

    @abstractmethod
    def load(self, path: Path, fmt: str, manifest: Mapping[str, Any]) -> Any:
        """The estimator ``save`` wrote; ``manifest`` holds what the saver recorded (task,
        classes, feature names, hyperparameters)."""


def unknown_key_problems(
    given: Mapping[str, Any], known: Iterable[str], what: str, prefix: str = "hyperparameters"
) -> list[ParamProblem]:
    """One problem per key of ``given`` not in ``known``, with the closest known name."""
    known = sorted(set(known))
    problems = []
    for key in given:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(ParamProblem(f"{prefix}.{key}", f"unknown {what}{hint}"))
    return problems


def integral_floats_to_int(value: Any) -> Any:
    """``value`` with every whole float (``6.0``) as an int, in lists and dicts too.

    Specs travel as protobuf ``Struct``s, where every number is a double; libraries that
    want ``max_depth=6`` reject or mishandle ``6.0``.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [integral_floats_to_int(v) for v in value]
    if isinstance(value, dict):
        return {k: integral_floats_to_int(v) for k, v in value.items()}
    return value


def backend_names() -> tuple[str, ...]:
    """Registered backend names, in registration order."""
    return tuple(BACKENDS)


@functools.cache
def get_backend(name: str) -> TrainerBackend:
    """The backend registered as ``name`` (one shared instance).

    Raises:
        KeyError: no such backend.
    """
    try:
        path = BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown trainer backend {name!r}; known: {', '.join(BACKENDS)}") from None
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls()  # type: ignore[no-any-return]


def all_formats() -> dict[str, tuple[str, ...]]:
    """Backend name -> the formats its ``save`` writes."""
    return {name: get_backend(name).formats for name in BACKENDS}
