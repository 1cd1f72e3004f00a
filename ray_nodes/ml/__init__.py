"""Deep learning on tabular data: a feed-forward network and scikit-learn estimators that
train it with Lightning.

* :class:`TabularNet`: a configurable multi-layer perceptron (``torch.nn.Module``).
* :class:`LightningClassifier`, :class:`LightningRegressor`: scikit-learn estimators around
  it, with early stopping on a validation fraction, restoring the best epoch, seeded
  determinism on CPU, and placement on the GPU that Ray assigned.
* :func:`save_estimator` / :func:`load_estimator`: tensors plus a JSON configuration, read
  back with ``torch.load(weights_only=True)`` (never a pickle of arbitrary objects).

* :data:`PARAM_NAMES`, :func:`param_problems`: the estimators' parameters and their checks,
  :func:`estimator_class` for a task, :class:`EpochRecord`: what one epoch reports.

The names are imported on first use, so the parameter checks (which the control plane runs)
do not import torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_nodes.ml._estimators import LightningClassifier, LightningRegressor, estimator_class
    from ray_nodes.ml._net import TabularNet
    from ray_nodes.ml._params import PARAM_NAMES, param_problems
    from ray_nodes.ml._state import load_estimator, save_estimator
    from ray_nodes.ml._training import EpochRecord

__all__ = [
    "PARAM_NAMES",
    "EpochRecord",
    "LightningClassifier",
    "LightningRegressor",
    "TabularNet",
    "estimator_class",
    "load_estimator",
    "param_problems",
    "save_estimator",
]

_WHERE = {
    "EpochRecord": "ray_nodes.ml._training",
    "LightningClassifier": "ray_nodes.ml._estimators",
    "LightningRegressor": "ray_nodes.ml._estimators",
    "PARAM_NAMES": "ray_nodes.ml._params",
    "TabularNet": "ray_nodes.ml._net",
    "estimator_class": "ray_nodes.ml._estimators",
    "load_estimator": "ray_nodes.ml._state",
    "param_problems": "ray_nodes.ml._params",
    "save_estimator": "ray_nodes.ml._state",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
