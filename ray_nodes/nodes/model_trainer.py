"""The ``model_trainer`` node type: fit a model on the training set of a split."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ray_nodes.data import TASKS, Split, TrainedModel, expect_input, json_scalar, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.nodes.trainers import TrainContext, backend_names, get_backend

__all__ = ["INPUT_EXAMPLE_ROWS", "ModelTrainerNode", "encode_labels"]

#: Rows of the training features a trained model keeps as its input example.
INPUT_EXAMPLE_ROWS = 5


def encode_labels(y: pd.Series, needs_indices: bool) -> tuple[tuple[Any, ...], pd.Series, bool]:
    """``(classes, y to fit on, whether it was encoded)``.

    ``classes`` are the sorted distinct labels, as scikit-learn's ``classes_``. When the
    library needs ``0..k-1`` and the labels are something else, ``y`` becomes the labels'
    positions in ``classes``.
    """
    labels = np.unique(y.to_numpy())
    classes = tuple(json_scalar(c) for c in labels)
    if not needs_indices or np.array_equal(labels, np.arange(len(labels))):
        return classes, y, False
    codes = np.searchsorted(labels, y.to_numpy())
    return classes, pd.Series(codes, index=y.index, name=y.name), True


class ModelTrainerNode(NodeType):
    """Fit a model on the training set of a split.

    Parameters:
        backend (required): ``xgboost``, ``lightgbm``, ``catboost`` or ``sklearn`` (and
            ``lightning``). Each backend's documentation lists what it does
            with the hyperparameters.
        task (``classification`` | ``regression``, required).
        estimator (string): for ``sklearn`` (and only there, where it is required): the
            class name of any scikit-learn classifier or regressor, such as
            ``RandomForestClassifier`` or ``Ridge``. Looked up among scikit-learn's public
            estimators of the task; nothing is imported from the string.
        hyperparameters (object): passed to the estimator's constructor. Unknown names and,
            for scikit-learn, values its parameter constraints refuse are validation errors.
            Whole numbers arrive from specs as floats and are passed as ints where the
            library wants ints. The thread count and seed are the node's (see below) and
            may not be set here.
        random_state (integer or null, default 0): the library's seed.

    The library uses as many threads as the node has CPUs (``resources.num_cpus``, default
    1): ``n_jobs``, ``nthread`` or ``thread_count``. A node with ``resources.num_gpus`` gets
    the GPU Ray assigned (for backends that can use one).

    Input: a split (scaled or not). Output: a model (:class:`ray_nodes.data.TrainedModel`)
    holding the fitted estimator, the feature names, the class labels and the split's
    fitted scaler.

    Metrics: ``train_seconds``, ``rows_train``, ``features``, and the library's training
    metrics (``train_logloss``, ``train_rmse``, ``train_accuracy``, ``boosting_rounds``, ...).

    Example::

        - id: train
          type: model_trainer
          depends_on: [scale]
          resources: {num_cpus: 4}
          params:
            backend: xgboost
            task: classification
            hyperparameters: {n_estimators: 300, max_depth: 6, learning_rate: 0.1}
            random_state: 42
    """

    type_name: ClassVar[str] = "model_trainer"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "backend": {"enum": list(backend_names()), "description": "The library."},
            "task": {"enum": list(TASKS)},
            "estimator": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "A scikit-learn class name (backend sklearn).",
            },
            "hyperparameters": {"type": "object", "description": "Passed to the estimator."},
            "random_state": {"type": ["integer", "null"], "minimum": 0, "maximum": 4294967295},
        },
        "required": ["backend", "task"],
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.SPLIT,)
    output: ClassVar[ArtifactKind] = ArtifactKind.MODEL
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """The backend's checks: estimator name, hyperparameter names and values."""
        backend = get_backend(params["backend"])
        estimator = params.get("estimator")
        if estimator is not None and not backend.takes_estimator:
            return [ParamProblem("estimator", f"not used by backend {backend.name}")]
        return backend.check(params["task"], estimator, params.get("hyperparameters") or {})

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Fit the model on the split's training set."""
        split: Split = expect_input(inputs[0], Split, self.type_name, "a split")
        params = ctx.params
        backend = get_backend(params["backend"])
        task = params["task"]
        seed = params.get("random_state", 0)
        random_state = None if seed is None else int(seed)
        hyperparameters = dict(params.get("hyperparameters") or {})
        problems = self.check_params(params)
        if problems:
            raise ValueError("; ".join(f"params.{p.path}: {p.description}" for p in problems))
        X, y = split.X_train, split.y_train
        _check_training_data(X, y, task, split.task_hint, backend.name)
        classes: tuple[Any, ...] | None = None
        label_encoded = False
        if task == "classification":
            classes, y, label_encoded = encode_labels(y, backend.needs_encoded_labels)
        n_threads = max(1, int(ctx.num_cpus))
        gpu_ids = tuple(int(g) for g in ctx.gpu_ids)
        estimator = backend.make_estimator(
            task,
            hyperparameters,
            estimator=params.get("estimator"),
            random_state=random_state,
            n_threads=n_threads,
            gpu_ids=gpu_ids,
        )
        started = time.perf_counter()
        # Ray sizes a worker's OpenMP and BLAS pools when it starts the process, for the task
        # it started it for; a worker reused for this node would give a multi-threaded
        # library only that many threads. Set them to this node's CPUs for the fit.
        with threadpool_limits(limits=n_threads):
            fitted = backend.fit(
                estimator,
                X,
                y,
                TrainContext(
                    task=task,
                    random_state=random_state,
                    n_threads=n_threads,
                    gpu_ids=gpu_ids,
                    report=ctx.report,
                ),
            )
        seconds = time.perf_counter() - started
        model = TrainedModel(
            backend=backend.name,
            task=task,
            estimator=fitted.estimator,
            feature_names=tuple(str(c) for c in X.columns),
            classes=classes,
            target=split.target,
            estimator_name=backend.estimator_name(task, params.get("estimator")),
            hyperparameters=hyperparameters,
            random_state=random_state,
            label_encoded=label_encoded,
            scaler=split.scaler,
            library_version=backend.library_version(),
            input_example=tuple(
                {str(k): json_scalar(v) for k, v in row.items()}
                for row in X.head(INPUT_EXAMPLE_ROWS).to_dict("records")
            ),
        )
        metrics = {
            "train_seconds": seconds,
            "rows_train": float(len(X)),
            "features": float(X.shape[1]),
            **fitted.metrics,
        }
        return node_result(model, metrics=metrics)


def _check_training_data(
    X: pd.DataFrame, y: pd.Series, task: str, hint: str | None, backend: str
) -> None:
    """Fail early, with the column names, on what every library would fail on obscurely."""
    if y.isna().any():
        raise ValueError(
            f"the target {y.name!r} has {int(y.isna().sum())} missing values; drop or fill "
            "them before training (data_preprocessor)"
        )
    if task == "classification" and hint == "regression":
        raise ValueError(
            f"the target {y.name!r} holds continuous values; use task: regression, "
            "or make the target a class label"
        )
    if backend != "catboost":
        text = [
            str(c)
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c].dtype)
            and not pd.api.types.is_bool_dtype(X[c].dtype)
            and not isinstance(X[c].dtype, pd.CategoricalDtype)
        ]
        if text:
            raise TypeError(
                f"backend {backend} needs numeric features; columns {text} are not numeric "
                "(drop them with data_loader's columns, or use backend catboost)"
            )
