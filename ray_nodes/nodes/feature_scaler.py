"""The ``feature_scaler`` node type: standardize, min-max or robust-scale the features.

Fitting reads only the training rows. For ``standard`` and ``minmax`` the statistics fan out
like the preprocessor's when the training set is large: each partition computes its counts,
means and sums of squared deviations (or minima and maxima), and the node combines them with
the pairwise update of Chan, Golub and LeVeque, which is as accurate as a single pass over
all rows. ``robust`` needs exact medians and quartiles, which do not combine from partial
results, so it is fitted in the node with numpy's own ``nanmedian``/``nanpercentile`` (the
training frame is already in its memory, zero-copy). Applying the fitted scaler is one
vectorized pass per frame.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ray_nodes.data import SCALER_METHODS, FittedScaler, Split, expect_input, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.nodes.partitions import default_partitions, make_runner, row_ranges

__all__ = ["MIN_ROWS_PER_PARTITION", "FeatureScalerNode", "combine_moments", "fit_scaler"]

#: Rows per partition below which fitting stays in the node: the statistics are a single
#: memory-bound pass, so a partition must be large to pay for putting the frame in the store.
MIN_ROWS_PER_PARTITION = 500_000
_EPS = np.finfo(np.float64).eps


def _float_dtype(frame: pd.DataFrame, columns: Sequence[Any]) -> np.dtype:
    """The dtype scikit-learn's ``check_array`` gives these columns: float32 when all are
    float32, float64 otherwise."""
    dtypes = [frame[c].dtype for c in columns]
    if dtypes and all(d == np.float32 for d in dtypes):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _partial_moments(
    frame: pd.DataFrame, start: int, stop: int, columns: Sequence[Any], method: str
) -> np.ndarray:
    """Per column ``(count, mean, M2)`` for ``standard`` or ``(count, min, max)`` for
    ``minmax`` over rows ``[start, stop)``, ignoring missing values."""
    part = frame.iloc[start:stop]
    out = np.zeros((len(columns), 3))
    for j, name in enumerate(columns):
        values = part[name].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        count = len(values)
        if count == 0:
            out[j] = (0.0, np.nan, np.nan)
        elif method == "standard":
            mean = values.sum() / count
            out[j] = (count, mean, np.square(values - mean).sum())
        else:
            out[j] = (count, values.min(), values.max())
    return out


def combine_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chan et al.'s combination of two ``(count, mean, M2)`` rows (arrays of rows)."""
    n_a, mean_a, m2_a = a[..., 0], a[..., 1], a[..., 2]
    n_b, mean_b, m2_b = b[..., 0], b[..., 1], b[..., 2]
    n = n_a + n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mean_b - mean_a
        mean = np.where(n_b == 0, mean_a, np.where(n_a == 0, mean_b, mean_a + delta * n_b / n))
        m2 = np.where(
            n_b == 0,
            m2_a,
            np.where(n_a == 0, m2_b, m2_a + m2_b + delta * delta * n_a * n_b / n),
        )
    return np.stack([n, mean, m2], axis=-1)


def _combine(method: str, partials: Sequence[np.ndarray]) -> np.ndarray:
    total = partials[0]
    for part in partials[1:]:
        if method == "standard":
            total = combine_moments(total, part)
        else:
            with np.errstate(invalid="ignore"):
                total = np.stack(
                    [
                        total[:, 0] + part[:, 0],
                        np.fmin(total[:, 1], part[:, 1]),
                        np.fmax(total[:, 2], part[:, 2]),
                    ],
                    axis=-1,
                )
    return total


def _zeros_to_one(scale: np.ndarray, constant: np.ndarray | None = None) -> np.ndarray:
    """scikit-learn's ``_handle_zeros_in_scale``: near-zero scales become 1."""
    scale = scale.copy()
    if constant is None:
        constant = scale < 10 * np.finfo(scale.dtype).eps
    scale[constant] = 1.0
    return scale


def fit_scaler(
    X_train: pd.DataFrame,
    columns: Sequence[Any],
    method: str,
    *,
    partitions: int = 1,
    name: str = "feature_scaler",
    feature_range: tuple[float, float] = (0.0, 1.0),
    quantile_range: tuple[float, float] = (25.0, 75.0),
) -> FittedScaler:
    """Fit a scaler on ``X_train[columns]`` equal to scikit-learn's (within float rounding for
    ``standard``, exactly for ``minmax`` and ``robust``)."""
    dtype = _float_dtype(X_train, columns)
    attributes: dict[str, np.ndarray]
    if method == "robust":
        values = np.empty((len(X_train), len(columns)), dtype=dtype)
        for j, column in enumerate(columns):
            values[:, j] = X_train[column].to_numpy(dtype=dtype, na_value=np.nan)
        counts = (~np.isnan(values)).sum(axis=0)
        center = np.nanmedian(values, axis=0)
        quantiles = np.transpose(
            [np.nanpercentile(values[:, j], quantile_range) for j in range(len(columns))]
        )
        del values
        attributes = {"center_": center, "scale_": _zeros_to_one(quantiles[1] - quantiles[0])}
    else:
        ranges = row_ranges(len(X_train), partitions)
        runner = make_runner(X_train, len(ranges), name)
        partials = runner.map(_partial_moments, [(a, b, list(columns), method) for a, b in ranges])
        del runner
        stats = _combine(method, partials)
        counts = stats[:, 0]
        if method == "standard":
            mean = stats[:, 1]
            var = stats[:, 2] / counts
            # scikit-learn's _is_constant_feature: variance within the rounding error bound
            # of the two-pass algorithm counts as zero.
            constant = var <= counts * _EPS * var + (counts * mean * _EPS) ** 2
            attributes = {
                "mean_": mean,
                "var_": var,
                "scale_": _zeros_to_one(np.sqrt(var), constant),
            }
        else:
            low, high = (np.asarray(v, dtype=dtype) for v in feature_range)
            data_min = stats[:, 1].astype(dtype)
            data_max = stats[:, 2].astype(dtype)
            data_range = data_max - data_min
            scale = (high - low) / _zeros_to_one(data_range)
            attributes = {
                "data_min_": data_min,
                "data_max_": data_max,
                "data_range_": data_range,
                "scale_": scale,
                "min_": low - data_min * scale,
            }
    return FittedScaler(
        method=method,
        columns=tuple(columns),
        attributes={k: tuple(float(x) for x in v) for k, v in attributes.items()},
        n_samples_seen=tuple(int(c) for c in counts),
        dtype=dtype.name,
    )


def _numeric_features(frame: pd.DataFrame) -> list[Any]:
    return [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c].dtype)
        and not pd.api.types.is_bool_dtype(frame[c].dtype)
    ]


class FeatureScalerNode(NodeType):
    """Scale features, fitted on the training set only and applied to both sets.

    Equal to fitting scikit-learn's ``StandardScaler``, ``MinMaxScaler`` or ``RobustScaler``
    on ``X_train[columns]`` and transforming ``X_train`` and ``X_test`` with it. Missing
    values are ignored when fitting and stay missing, as in scikit-learn. Scaled columns
    become float64 (float32 when every scaled column is float32).

    Parameters:
        method (``standard`` | ``minmax`` | ``robust``, default ``standard``): remove the
            mean and divide by the standard deviation; map [min, max] to ``feature_range``;
            or remove the median and divide by the interquartile range.
        columns (list of strings): the features to scale. Default: every numeric feature
            (booleans excluded).
        feature_range ([low, high], default [0, 1]): the target range of ``minmax``.
        quantile_range ([low, high] percentiles, default [25, 75]): the range of ``robust``.
        partitions (integer >= 1): parallel tasks for fitting ``standard`` and ``minmax``.
            Default: the cluster's CPUs, but no more than one per 500,000 training rows.

    Input: a split. Output: the split with scaled features; its ``scaler`` holds the fitted
    attributes (as scikit-learn names them), which ``model_trainer`` passes on to the model
    so that ``model_saver`` stores them with it.

    Metrics: ``columns_scaled``, ``seconds``.

    Example::

        - id: scale
          type: feature_scaler
          depends_on: [split]
          params: {method: robust, columns: [income, age]}
    """

    type_name: ClassVar[str] = "feature_scaler"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "method": {"enum": list(SCALER_METHODS), "default": "standard"},
            "columns": {
                "type": "array",
                "items": {"type": "string"},
                "uniqueItems": True,
                "description": "Features to scale; default every numeric feature.",
            },
            "feature_range": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 2,
            },
            "quantile_range": {
                "type": "array",
                "items": {"type": "number", "minimum": 0, "maximum": 100},
                "minItems": 2,
                "maxItems": 2,
            },
            "partitions": {"type": "integer", "minimum": 1, "maximum": 4096},
        },
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.SPLIT,)
    output: ClassVar[ArtifactKind] = ArtifactKind.SPLIT
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """Ranges in order, and each range only with its method."""
        problems = []
        method = params.get("method", "standard")
        for key, owner in (("feature_range", "minmax"), ("quantile_range", "robust")):
            if key not in params:
                continue
            low, high = params[key]
            if method != owner:
                problems.append(ParamProblem(key, f"only used with method: {owner}"))
            elif not low < high:
                problems.append(
                    ParamProblem(key, f"must be [low, high] with low < high, got {[low, high]}")
                )
        return problems

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Fit on the training features and scale both sets."""
        split: Split = expect_input(inputs[0], Split, self.type_name, "a split")
        params = ctx.params
        method = params.get("method", "standard")
        X_train, X_test = split.X_train, split.X_test
        if "columns" in params:
            columns = list(params["columns"])
            unknown = [c for c in columns if c not in X_train.columns]
            if unknown:
                where = " (it is the target)" if split.target in unknown else ""
                raise KeyError(
                    f"{self.type_name}: no feature column(s) {unknown}{where}; "
                    f"features are {[str(c) for c in X_train.columns]}"
                )
            bad = [c for c in columns if not pd.api.types.is_numeric_dtype(X_train[c].dtype)]
            if bad:
                raise TypeError(f"{self.type_name}: column(s) {bad} are not numeric")
        else:
            columns = _numeric_features(X_train)
        started = time.perf_counter()
        partitions = int(
            params.get("partitions") or default_partitions(len(X_train), MIN_ROWS_PER_PARTITION)
        )
        scaler = fit_scaler(
            X_train,
            columns,
            method,
            partitions=partitions,
            name=f"{ctx.pipeline_id}/{ctx.node_id}",
            feature_range=tuple(params.get("feature_range", (0.0, 1.0))),  # type: ignore[arg-type]
            quantile_range=tuple(params.get("quantile_range", (25.0, 75.0))),  # type: ignore[arg-type]
        )
        out = split.with_features(scaler.transform(X_train), scaler.transform(X_test), scaler)
        metrics = {"columns_scaled": float(len(columns)), "seconds": time.perf_counter() - started}
        return node_result(out, metrics=metrics)
