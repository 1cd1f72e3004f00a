"""The typed values that flow between the built-in nodes.

Each :class:`~ray_nodes.node.ArtifactKind` has one Python shape, so a node can rely on what
it receives once validation has checked the wiring:

==========  ==========================================================================
kind        value
==========  ==========================================================================
dataset     a :class:`pandas.DataFrame` (:data:`Dataset`)
split       a :class:`Split`: train and test features and targets, and the fitted scaler
model       a :class:`TrainedModel`: the fitted estimator and what it was trained on
metrics     a ``dict[str, float]`` (:data:`Metrics`)
==========  ==========================================================================

Values travel between Ray tasks through the object store. DataFrames and Series whose
columns are numpy or Arrow arrays are deserialized zero-copy there, which is why these are
plain dataclasses of frames rather than anything that converts or copies on the way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = [
    "SCALER_METHODS",
    "TASKS",
    "Dataset",
    "FittedScaler",
    "Metrics",
    "Split",
    "TrainedModel",
    "expect_input",
    "json_scalar",
    "node_result",
    "output_of",
]

#: A dataset: one table.
Dataset: TypeAlias = pd.DataFrame
#: Named scores, as the evaluator gives them.
Metrics: TypeAlias = dict[str, float]
#: The learning tasks the trainer and evaluator know.
TASKS: tuple[str, ...] = ("classification", "regression")
#: The scaling methods of :class:`FittedScaler`, named as in the ``feature_scaler`` params.
SCALER_METHODS: tuple[str, ...] = ("standard", "minmax", "robust")


def expect_input(value: Any, cls: type, node: str, what: str) -> Any:
    """``value`` when it is a ``cls``; otherwise a TypeError that says what arrived.

    Validation makes a wrong type impossible for specs it checked; this catches nodes called
    directly (tests, custom code) with the wrong thing, with a readable message.
    """
    if not isinstance(value, cls):
        raise TypeError(f"{node} needs {what} as its input, got {type(value).__name__}")
    return value


def json_scalar(value: Any) -> Any:
    """A numpy scalar as the equivalent Python scalar (for JSON); other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def node_result(
    output: Any,
    *,
    metrics: Mapping[str, float] | None = None,
    artifacts: Sequence[Any] = (),
) -> Any:
    """What a built-in node's ``run`` returns: the engine's
    :class:`~ray_nodes.engine.NodeResult`, holding the output, the metrics the node measured
    and the files it wrote (``ArtifactRef`` fields as dicts; ``content`` without ``uri`` for
    a file the engine writes beside the node's output).

    Every built-in node returns through here, so the result type is named in one place.
    """
    from ray_nodes.engine.types import NodeResult

    return NodeResult(output, metrics=dict(metrics or {}), artifacts=tuple(artifacts))


def output_of(result: Any) -> Any:
    """The output in what a node's ``run`` returned (a NodeResult or a bare output)."""
    from ray_nodes.engine.types import NodeResult

    return result.output if isinstance(result, NodeResult) else result


@dataclass(frozen=True)
class FittedScaler:
    """A scaler fitted on a training split, in a form that needs no pickle to store.

    The attributes mirror scikit-learn's: ``standard`` has ``mean_``, ``var_``, ``scale_``;
    ``minmax`` has ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``, ``min_``;
    ``robust`` has ``center_`` and ``scale_``. :meth:`transform` computes exactly what the
    scikit-learn scaler with these attributes computes.

    Attributes:
        method: ``standard``, ``minmax`` or ``robust``.
        columns: The scaled columns, in order.
        attributes: Attribute name -> one value per column.
        n_samples_seen: Non-missing training values per column.
        dtype: The floating dtype the scaled columns get (``float64`` unless every scaled
            column was ``float32``, as in scikit-learn).
    """

    method: str
    columns: tuple[str, ...]
    attributes: Mapping[str, tuple[float, ...]]
    n_samples_seen: tuple[int, ...]
    dtype: str = "float64"

    def _array(self, name: str) -> np.ndarray:
        # The dtypes scikit-learn computes with: the data's, except RobustScaler's scale_,
        # which numpy's percentile gives as float64 and which is not cast before dividing.
        dtype = np.float64 if (self.method, name) == ("robust", "scale_") else self.dtype
        return np.asarray(self.attributes[name], dtype=dtype)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with :attr:`columns` scaled; other columns are shared, not copied.

        Raises:
            KeyError: a scaled column is missing from ``frame``.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise KeyError(f"columns to scale are missing: {missing}")
        if not self.columns:
            return frame
        values = _float_matrix(frame, self.columns, np.dtype(self.dtype))
        # The same operations in the same order as scikit-learn's transform, in place on
        # the fresh matrix, so the results are bit-for-bit the library's.
        if self.method == "minmax":
            values *= self._array("scale_")
            values += self._array("min_")
        else:
            center = "mean_" if self.method == "standard" else "center_"
            values -= self._array(center)
            values /= self._array("scale_")
        scaled = pd.DataFrame(values, index=frame.index, columns=list(self.columns), copy=False)
        if tuple(frame.columns) == self.columns:
            return scaled
        out = frame.copy(deep=False)
        for name in self.columns:
            out[name] = scaled[name]
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for model manifests)."""
        return {
            "method": self.method,
            "columns": list(self.columns),
            "attributes": {k: list(v) for k, v in self.attributes.items()},
            "n_samples_seen": list(self.n_samples_seen),
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedScaler:
        """The inverse of :meth:`to_dict`."""
        return cls(
            method=str(data["method"]),
            columns=tuple(data["columns"]),
            attributes={k: tuple(float(x) for x in v) for k, v in data["attributes"].items()},
            n_samples_seen=tuple(int(x) for x in data["n_samples_seen"]),
            dtype=str(data.get("dtype", "float64")),
        )


def _float_matrix(frame: pd.DataFrame, columns: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """A fresh, writable (rows, columns) matrix of ``columns``; missing values become NaN."""
    out = np.empty((len(frame), len(columns)), dtype=dtype, order="F")
    for j, name in enumerate(columns):
        out[:, j] = frame[name].to_numpy(dtype=dtype, na_value=np.nan)
    return out


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split of a dataset, as ``train_test_split`` gives it.

    The frames keep the original index of the dataset's rows, so a prediction can always be
    traced back to its row.

    Attributes:
        X_train: Training features (every column but the target).
        X_test: Test features, same columns.
        y_train: Training target.
        y_test: Test target.
        target: The target column's name.
        task_hint: ``classification`` or ``regression`` as scikit-learn's
            ``type_of_target`` sees the target, or None when it cannot tell.
        scaler: The scaler fitted on ``X_train`` and applied to both, once a
            ``feature_scaler`` has run.
        stratified: Whether the split was stratified by the target.
        random_state: The seed of the split, if any.
    """

    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    target: str
    task_hint: str | None = None
    scaler: FittedScaler | None = None
    stratified: bool = False
    random_state: int | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns, in order."""
        return tuple(str(c) for c in self.X_train.columns)

    def with_features(
        self, X_train: pd.DataFrame, X_test: pd.DataFrame, scaler: FittedScaler | None
    ) -> Split:
        """A copy with new feature frames (and the scaler that made them)."""
        return dataclasses.replace(self, X_train=X_train, X_test=X_test, scaler=scaler)


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A fitted model and what it needs to predict.

    Attributes:
        backend: The trainer backend that made it (``xgboost``, ``sklearn``, ...).
        task: ``classification`` or ``regression``.
        estimator: The fitted estimator; for every backend it has scikit-learn's
            ``predict`` (and ``predict_proba`` for classifiers).
        feature_names: The columns it was trained on, in order.
        classes: The class labels for classification, sorted as scikit-learn sorts them;
            ``None`` for regression.
        target: The target column's name.
        estimator_name: The estimator's class name.
        hyperparameters: The hyperparameters as given in the node's params.
        random_state: The seed it was trained with.
        label_encoded: Whether the estimator was fitted on class indices
            (``0..len(classes)-1``) rather than the labels themselves; predictions are
            mapped back to labels here.
        scaler: The scaler applied to the features before training, for saving with it.
        library_version: The version of the library that fitted it.
        input_example: A few rows of the features it was trained on, as JSON-able records
            (column -> value), for model registries that store an input example.
    """

    backend: str
    task: str
    estimator: Any
    feature_names: tuple[str, ...]
    classes: tuple[Any, ...] | None = None
    target: str = ""
    estimator_name: str = ""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    random_state: int | None = None
    label_encoded: bool = False
    scaler: FittedScaler | None = None
    library_version: str = ""
    input_example: tuple[dict[str, Any], ...] = ()

    def features(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns of ``X``, in training order.

        Raises:
            KeyError: ``X`` lacks some of them.
        """
        missing = [c for c in self.feature_names if c not in X.columns]
        if missing:
            raise KeyError(f"the data lacks the model's feature columns {missing}")
        if tuple(X.columns) == self.feature_names:
            return X
        return X[list(self.feature_names)]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted labels (classification) or values (regression) for the rows of ``X``."""
        predicted = np.asarray(self.estimator.predict(self.features(X)))
        if predicted.ndim == 2 and predicted.shape[1] == 1:
            predicted = predicted[:, 0]  # CatBoost's multiclass labels come as a column
        if self.label_encoded and self.classes is not None:
            labels = np.asarray(self.classes, dtype=object if _mixed(self.classes) else None)
            return labels[predicted.astype(np.int64)]
        return predicted

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per entry of :attr:`classes`.

        Raises:
            AttributeError: the task is regression or the estimator gives no probabilities.
        """
        if self.task != "classification" or not hasattr(self.estimator, "predict_proba"):
            raise AttributeError(f"{self.estimator_name or self.backend} gives no probabilities")
        return np.asarray(self.estimator.predict_proba(self.features(X)))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Decision scores, for classifiers without probabilities (such as ``LinearSVC``)."""
        return np.asarray(self.estimator.decision_function(self.features(X)))


def _mixed(values: Sequence[Any]) -> bool:
    return len({type(v) for v in values}) > 1
