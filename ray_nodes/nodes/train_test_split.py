"""The ``train_test_split`` node type: split a dataset into training and test sets."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pandas as pd

from ray_nodes.data import Dataset, Split, expect_input, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults

__all__ = ["TrainTestSplitNode", "infer_task"]


def infer_task(y: pd.Series) -> str | None:
    """``classification`` or ``regression`` as scikit-learn's ``type_of_target`` sees ``y``."""
    from sklearn.utils.multiclass import type_of_target

    try:
        kind = type_of_target(y)
    except ValueError:
        return None
    if kind in ("binary", "multiclass"):
        return "classification"
    if kind == "continuous":
        return "regression"
    return None


class TrainTestSplitNode(NodeType):
    """Split a dataset into training and test sets, exactly as scikit-learn does.

    The result is that of::

        X, y = df.drop(columns=[target]), df[target]
        X_train, X_test, y_train, y_test = sklearn.model_selection.train_test_split(
            X, y, test_size=test_size, random_state=random_state, shuffle=shuffle,
            stratify=y if stratify else None)

    so the same seed selects the same rows as a plain scikit-learn script. Rows keep their
    index.

    Parameters:
        target (string, required): the column to predict; every other column is a feature.
        test_size (number, default 0.25): a fraction in (0, 1), or a whole number of rows.
        random_state (integer or null, default null): the shuffle's seed. Null means a new
            shuffle every run, as in scikit-learn; set it for reproducible runs.
        stratify (bool, default false): keep the class proportions of the target in both
            sets (classification targets; needs ``shuffle``).
        shuffle (bool, default true): shuffle before splitting; without it the last rows
            are the test set.

    Input: a dataset. Output: a split (see :class:`ray_nodes.data.Split`), with
    ``task_hint`` set from the target's values.

    Metrics: ``rows_train``, ``rows_test``, ``features``.

    Example::

        - id: split
          type: train_test_split
          depends_on: [clean]
          params: {target: churned, test_size: 0.2, random_state: 42, stratify: true}
    """

    type_name: ClassVar[str] = "train_test_split"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "target": {"type": "string", "minLength": 1, "description": "The target column."},
            "test_size": {
                "oneOf": [
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    {"type": "integer", "minimum": 1},
                ],
                "default": 0.25,
                "description": "Fraction of rows (0 < x < 1) or number of rows in the test set.",
            },
            "random_state": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 4294967295,
                "default": None,
            },
            "stratify": {"type": "boolean", "default": False},
            "shuffle": {"type": "boolean", "default": True},
        },
        "required": ["target"],
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.DATASET,)
    output: ClassVar[ArtifactKind] = ArtifactKind.SPLIT
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """Stratifying needs shuffling (scikit-learn has no ordered stratified split)."""
        if params.get("stratify") and params.get("shuffle") is False:
            return [ParamProblem("stratify", "a stratified split needs shuffle: true")]
        return []

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Split the dataset."""
        from sklearn.model_selection import train_test_split

        frame: Dataset = expect_input(inputs[0], pd.DataFrame, self.type_name, "a dataset")
        params = ctx.params
        target = params["target"]
        if target not in frame.columns:
            raise KeyError(
                f"{self.type_name}: target column {target!r} is not in the dataset; "
                f"its columns are {[str(c) for c in frame.columns]}"
            )
        if frame.shape[1] < 2:
            raise ValueError(
                f"{self.type_name}: the dataset has no feature columns besides {target!r}"
            )
        test_size = params.get("test_size", 0.25)
        if isinstance(test_size, float) and test_size.is_integer() and test_size >= 1:
            test_size = int(test_size)  # JSON has one number type; 100.0 means 100 rows
        shuffle = bool(params.get("shuffle", True))
        stratify = bool(params.get("stratify", False))
        seed = params.get("random_state")
        random_state = None if seed is None else int(seed)  # JSON numbers arrive as floats
        started = time.perf_counter()
        X = frame.drop(columns=[target])
        y = frame[target]
        X_train, X_test, y_train, y_test = train_test_split(
            X,
            y,
            test_size=test_size,
            random_state=random_state,
            shuffle=shuffle,
            stratify=y if stratify else None,
        )
        del X
        split = Split(
            X_train=X_train,
            X_test=X_test,
            y_train=y_train,
            y_test=y_test,
            target=str(target),
            task_hint=infer_task(y_train),
            stratified=stratify,
            random_state=random_state,
        )
        metrics = {
            "rows_train": float(len(X_train)),
            "rows_test": float(len(X_test)),
            "features": float(X_train.shape[1]),
            "seconds": time.perf_counter() - started,
        }
        return node_result(split, metrics=metrics)
