"""The feature scaler equals scikit-learn's scalers fitted on the training split, whatever the
partitioning (in-process here; through Ray in tests/integration/test_nodes.py)."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from ray_nodes.data import FittedScaler, Split, output_of
from ray_nodes.node import NodeContext
from ray_nodes.nodes import feature_scaler, partitions
from ray_nodes.nodes.feature_scaler import FeatureScalerNode, combine_moments, fit_scaler


@pytest.fixture(autouse=True)
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partitions run one after another in this process."""
    monkeypatch.setattr(
        feature_scaler, "make_runner", lambda frame, n, name: partitions.LocalRunner(frame)
    )


def frame(n: int, dtype: str = "float64", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(rng.normal(loc=1e3, scale=7.0, size=(n, 4)), columns=list("abcd"))
    out["c"] = 5.0  # constant: scale 1, as scikit-learn
    out.loc[rng.random(n) < 0.1, "b"] = np.nan
    out = out.astype(dtype)
    out["k"] = rng.integers(0, 10, n)
    return out


def sklearn_scaler(method: str) -> Any:
    return {
        "standard": StandardScaler(),
        "minmax": MinMaxScaler(feature_range=(-1, 2)),
        "robust": RobustScaler(quantile_range=(10, 90)),
    }[method]


class ScalerOptions(TypedDict, total=False):
    """The keyword arguments of fit_scaler that a method takes."""

    feature_range: tuple[float, float]
    quantile_range: tuple[float, float]


OPTIONS: dict[str, ScalerOptions] = {
    "minmax": {"feature_range": (-1.0, 2.0)},
    "robust": {"quantile_range": (10.0, 90.0)},
}


@pytest.mark.parametrize("method", ["standard", "minmax", "robust"])
@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_and_transform_equal_sklearn(method: str, partitions: int, dtype: str) -> None:
    data = frame(1001, dtype)
    columns = list("abcd") if dtype == "float32" else list("abcdk")
    scaler = fit_scaler(
        data, columns, method, partitions=partitions, **OPTIONS.get(method, ScalerOptions())
    )
    reference = sklearn_scaler(method).fit(data[columns])
    expected = reference.transform(data[columns])
    got = scaler.transform(data)[columns].to_numpy()
    assert got.dtype == expected.dtype
    if method == "standard" and dtype == "float64":
        # Moments combined per partition differ from scikit-learn's single pass in the last
        # bits only.
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(scaler.attributes["mean_"], reference.mean_, rtol=1e-15)
        np.testing.assert_allclose(scaler.attributes["var_"], reference.var_, rtol=1e-12)
    else:
        np.testing.assert_array_equal(got, expected)


def test_chan_combination_equals_the_whole() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(loc=5e8, size=10_000)

    def moments(x: np.ndarray) -> np.ndarray:
        return np.array([len(x), x.mean(), np.square(x - x.mean()).sum()])

    combined = moments(values[:10])
    for lo in range(10, len(values), 997):
        combined = combine_moments(combined, moments(values[lo : lo + 997]))
    assert combined[0] == len(values)
    np.testing.assert_allclose(combined[1], values.mean(), rtol=1e-15)
    np.testing.assert_allclose(combined[2] / len(values), values.var(), rtol=1e-9)
    empty = np.array([0.0, np.nan, np.nan])
    np.testing.assert_array_equal(combine_moments(empty, moments(values)), moments(values))


def make_split(data: pd.DataFrame) -> Split:
    y = pd.Series(np.arange(len(data)) % 2, index=data.index, name="y")
    half = len(data) // 2
    return Split(data.iloc[:half], data.iloc[half:], y.iloc[:half], y.iloc[half:], "y")


def test_node_fits_on_train_only_and_keeps_other_columns() -> None:
    data = frame(200)
    data["name"] = pd.Series(["n"] * len(data), dtype="str")
    data["flag"] = True
    split = make_split(data)
    ctx = NodeContext("r", "runs/r", "p", "scale", 1, {"method": "minmax"}, 1.0)
    out = output_of(FeatureScalerNode().run(ctx, [split]))
    reference = MinMaxScaler().fit(split.X_train[list("abcdk")])
    np.testing.assert_array_equal(
        out.X_test[list("abcdk")].to_numpy(), reference.transform(split.X_test[list("abcdk")])
    )
    assert out.scaler.columns == tuple("abcdk")  # strings and booleans are not scaled
    assert out.X_test["name"].equals(split.X_test["name"])
    assert out.y_train is split.y_train
    assert out.X_train.index.equals(split.X_train.index)
    restored = FittedScaler.from_dict(out.scaler.to_dict())
    pd.testing.assert_frame_equal(restored.transform(split.X_test), out.X_test)


def test_node_errors_name_the_columns() -> None:
    split = make_split(frame(20).assign(name="x"))
    ctx = NodeContext("r", "runs/r", "p", "scale", 1, {"columns": ["a", "y"]}, 1.0)
    with pytest.raises(KeyError, match=r"\['y'\] \(it is the target\)"):
        FeatureScalerNode().run(ctx, [split])
    ctx.params = {"columns": ["name"]}
    with pytest.raises(TypeError, match="not numeric"):
        FeatureScalerNode().run(ctx, [split])
