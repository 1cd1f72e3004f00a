"""The estimators' parameters and their checks, without importing torch.

The ``lightning`` trainer backend validates a spec's hyperparameters on the control plane,
which should not import torch or Lightning for that; the estimators run the same checks when
they fit (scikit-learn's convention: ``__init__`` and ``set_params`` never validate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ACTIVATIONS", "DEFAULTS", "PARAM_NAMES", "param_problems"]

#: Activation name -> ``torch.nn`` class name.
ACTIVATIONS: dict[str, str] = {
    "relu": "ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "elu": "ELU",
    "leaky_relu": "LeakyReLU",
}

#: Every constructor parameter of ``LightningClassifier`` / ``LightningRegressor`` and its
#: default (a unit test pins this against the classes' signatures).
DEFAULTS: dict[str, Any] = {
    "hidden_layer_sizes": (64, 32),
    "activation": "relu",
    "batch_norm": False,
    "dropout": 0.0,
    "max_epochs": 100,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "validation_fraction": 0.1,
    "patience": 10,
    "random_state": None,
    "accelerator": "auto",
    "devices": "auto",
    "num_threads": None,
}
PARAM_NAMES: frozenset[str] = frozenset(DEFAULTS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def param_problems(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameter name -> what is wrong with its value, for the names present in ``params``.

    Numbers must already be ints where ints are meant (the backend turns a spec's ``6.0``
    into ``6`` first).
    """
    problems: dict[str, str] = {}
    checks = {
        "hidden_layer_sizes": (
            lambda v: isinstance(v, list | tuple) and all(_is_int(s) and s > 0 for s in v),
            "a list of positive ints (empty for a linear model)",
        ),
        "activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
        "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
        "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "max_epochs": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "batch_size": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "learning_rate": (lambda v: _is_number(v) and v > 0, "a number > 0"),
        "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
        "validation_fraction": (
            lambda v: _is_number(v) and 0 <= v < 1,
            "a number in [0, 1) (0: no validation, no early stopping)",
        ),
        "patience": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "random_state": (
            lambda v: v is None or (_is_int(v) and 0 <= v < 2**32) or hasattr(v, "randint"),
            "None, an int in [0, 2**32) or a numpy RandomState",
        ),
        "accelerator": (lambda v: v in ("auto", "cpu", "gpu", "cuda"), "auto, cpu, gpu or cuda"),
        "devices": (
            lambda v: (
                v == "auto"
                or (_is_int(v) and v == 1)
                or (isinstance(v, list | tuple) and len(v) == 1 and _is_int(v[0]) and v[0] >= 0)
            ),
            "auto, 1 or a list of one device index (one device per estimator)",
        ),
        "num_threads": (lambda v: v is None or (_is_int(v) and v >= 1), "None or an int >= 1"),
    }
    for name, (ok, expected) in checks.items():
        if name in params and not ok(params[name]):
            problems[name] = f"must be {expected}, not {params[name]!r}"
    return problems
