"""scikit-learn's own estimator checks on the Lightning estimators.

Two instances of each: few epochs with the defaults otherwise, and batch normalization,
dropout and another activation. Every check passes; a check that could not hold for a
stochastic network would be listed in :data:`EXPECTED_FAILED` with the reason rather than
skipped. (``check_array_api_input`` is skipped by scikit-learn itself unless
``SCIPY_ARRAY_API=1``; it is about array-API namespaces, which these estimators do not
claim to support.)
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from ray_nodes.ml import LightningClassifier, LightningRegressor
from ray_nodes.ml._params import DEFAULTS, param_problems

FAST: dict[str, Any] = {"max_epochs": 10, "learning_rate": 1e-2, "random_state": 0}
VARIANT: dict[str, Any] = {"batch_norm": True, "dropout": 0.1, "hidden_layer_sizes": (32,), **FAST}

#: Check name -> why it cannot hold. Empty: every check holds, with seeds fixed.
EXPECTED_FAILED: dict[str, str] = {}


def expected_failed(estimator: BaseEstimator) -> dict[str, str]:
    return EXPECTED_FAILED


@parametrize_with_checks(
    [
        LightningClassifier(**FAST),
        LightningRegressor(**FAST),
        LightningClassifier(activation="gelu", **VARIANT),
        LightningRegressor(activation="tanh", **VARIANT),
    ],
    expected_failed_checks=expected_failed,
)
def test_sklearn_estimator_checks(estimator: BaseEstimator, check: Any) -> None:
    check(estimator)


@pytest.mark.parametrize("cls", [LightningClassifier, LightningRegressor])
def test_defaults_are_the_torch_free_ones(cls: type) -> None:
    """The control plane checks specs against ``_params.DEFAULTS``; it must be the API."""
    signature = inspect.signature(cls)
    assert {n: p.default for n, p in signature.parameters.items()} == DEFAULTS
    assert param_problems(DEFAULTS) == {}


def test_bad_params_fail_at_fit_with_the_names() -> None:
    estimator = LightningClassifier(hidden_layer_sizes=(0,), dropout=1.0, devices=[0, 1])
    with pytest.raises(ValueError, match="devices") as info:
        estimator.fit([[0.0], [1.0]], [0, 1])
    assert "hidden_layer_sizes" in str(info.value)
    assert "dropout" in str(info.value)
