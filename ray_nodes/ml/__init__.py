"""Deep learning on tabular data: a feed-forward network and scikit-learn estimators that
train it with Lightning.

* :class:`TabularNet`: a configurable multi-layer perceptron (``torch.nn.Module``).
* :class:`LightningClassifier`, :class:`LightningRegressor`: scikit-learn estimators around
  it, with early stopping on a validation fraction, restoring the best epoch, seeded
  determinism on CPU, and placement on the GPU that Ray assigned.
* :func:`save_estimator` / :func:`load_estimator`: tensors plus a JSON configuration, read
  back with ``torch.load(weights_only=True)`` (never a pickle of arbitrary objects).

The names are imported on first use, so ``ray_nodes.ml._params`` (the parameter checks the
control plane runs) does not import torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray_nodes.ml._estimators import LightningClassifier, LightningRegressor
    from ray_nodes.ml._net import TabularNet
    from ray_nodes.ml._state import load_estimator, save_estimator

__all__ = [
    "LightningClassifier",
    "LightningRegressor",
    "TabularNet",
    "load_estimator",
    "save_estimator",
]

_WHERE = {
    "LightningClassifier": "ray_nodes.ml._estimators",
    "LightningRegressor": "ray_nodes.ml._estimators",
    "TabularNet": "ray_nodes.ml._net",
    "load_estimator": "ray_nodes.ml._state",
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
