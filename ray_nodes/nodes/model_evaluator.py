"""The ``model_evaluator`` node type: score a model on the test set of a split."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from ray_nodes.data import Metrics, Split, TrainedModel, expect_input, node_result
from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem, ResourceDefaults
from ray_nodes.nodes.trainers import get_backend

__all__ = [
    "CLASSIFICATION_METRICS",
    "DEFAULT_METRICS",
    "REGRESSION_METRICS",
    "ModelEvaluatorNode",
    "evaluate",
    "top_importances",
]

#: Classification metrics this node computes.
CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "matthews_corrcoef",
)
#: Regression metrics this node computes.
REGRESSION_METRICS = ("r2", "rmse", "mae", "mse", "mape", "explained_variance", "median_ae")
#: The metrics computed when the params name none.
DEFAULT_METRICS = {
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
    "regression": ("r2", "rmse", "mae"),
}


def _scores(model: TrainedModel, X: Any) -> np.ndarray | None:
    """Probabilities (or decision scores) for the ranking metrics, None if the model has
    neither."""
    if hasattr(model.estimator, "predict_proba"):
        try:
            return model.predict_proba(X)
        except AttributeError:  # e.g. SVC(probability=False) hides it behind a property
            pass
    if hasattr(model.estimator, "decision_function"):
        return model.decision_function(X)
    return None


def _classification(
    name: str, y: np.ndarray, predicted: np.ndarray, scores: np.ndarray | None, model: TrainedModel
) -> float | None:
    from sklearn import metrics as m

    classes = list(model.classes or ())
    binary = len(classes) == 2
    # Binary: the positive class is the larger label (1 for 0/1 labels, as scikit-learn's
    # default); multiclass: averages weighted by class support.
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[-1]} if binary else {"average": "weighted"}
    )
    simple: dict[str, Callable[..., float]] = {
        "accuracy": m.accuracy_score,
        "balanced_accuracy": m.balanced_accuracy_score,
        "matthews_corrcoef": m.matthews_corrcoef,
    }
    if name in simple:
        return float(simple[name](y, predicted))
    if name in ("precision", "recall", "f1"):
        fn = {"precision": m.precision_score, "recall": m.recall_score, "f1": m.f1_score}[name]
        return float(fn(y, predicted, **averaging))
    if scores is None:
        return None
    if name == "roc_auc":
        if binary:
            positive = scores[:, 1] if scores.ndim == 2 else scores
            return float(m.roc_auc_score(y, positive))
        return float(
            m.roc_auc_score(y, scores, multi_class="ovr", average="weighted", labels=classes)
        )
    if name == "log_loss" and hasattr(model.estimator, "predict_proba"):
        return float(m.log_loss(y, scores, labels=classes))
    return None


def _regression(name: str, y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn import metrics as m

    fns: dict[str, Callable[..., float]] = {
        "r2": m.r2_score,
        "rmse": m.root_mean_squared_error,
        "mae": m.mean_absolute_error,
        "mse": m.mean_squared_error,
        "mape": m.mean_absolute_percentage_error,
        "explained_variance": m.explained_variance_score,
        "median_ae": m.median_absolute_error,
    }
    return float(fns[name](y, predicted))


def evaluate(model: TrainedModel, split: Split, names: Sequence[str]) -> tuple[Metrics, list[str]]:
    """``(metrics, notes)``: each named metric on the split's test set, computed by
    ``sklearn.metrics``; notes say which could not be computed and why."""
    X, y = split.X_test, split.y_test.to_numpy()
    known = CLASSIFICATION_METRICS if model.task == "classification" else REGRESSION_METRICS
    wrong = [n for n in names if n not in known]
    if wrong:
        raise ValueError(
            f"metrics {wrong} do not apply to {model.task}; {model.task} metrics: {list(known)}"
        )
    predicted = model.predict(X)
    metrics: Metrics = {}
    notes: list[str] = []
    if model.task == "regression":
        for name in names:
            metrics[name] = _regression(name, y, predicted)
        return metrics, notes
    ranking = {"roc_auc", "log_loss"} & set(names)
    scores = _scores(model, X) if ranking else None
    for name in names:
        value = _classification(name, y, predicted, scores, model)
        if value is None:
            notes.append(f"{name}: {model.estimator_name or model.backend} gives no scores")
        else:
            metrics[name] = value
    return metrics, notes


def top_importances(importances: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The ``k`` largest importances, ties by feature name."""
    ranked = sorted(importances.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:k]


class ModelEvaluatorNode(NodeType):
    """Score a model on the test set of a split, with ``sklearn.metrics``.

    Every value equals the ``sklearn.metrics`` function applied to the split's ``y_test``
    and the model's predictions on ``X_test``:

    * classification: ``accuracy``, ``balanced_accuracy``, ``precision``, ``recall``,
      ``f1``, ``roc_auc``, ``log_loss``, ``matthews_corrcoef``. For two classes,
      precision/recall/f1 use ``average="binary"`` with the larger label as the positive
      class (1 for 0/1 labels), and ``roc_auc`` scores ``predict_proba(X)[:, 1]``. For more
      classes they use ``average="weighted"`` and ``roc_auc`` is one-vs-rest, weighted.
      Models without probabilities are ranked by ``decision_function``; ``log_loss`` needs
      probabilities.
    * regression: ``r2``, ``rmse`` (``root_mean_squared_error``), ``mae``, ``mse``,
      ``mape``, ``explained_variance``, ``median_ae``.

    Parameters:
        metrics (list): which metrics; default ``accuracy, precision, recall, f1, roc_auc``
            for classification and ``r2, rmse, mae`` for regression. A metric of the other
            task fails the node (the task is known only from the model).
        feature_importance_top_k (integer >= 0, default 10): report the k largest feature
            importances as metrics named ``importance.<feature>``; 0 turns this off. All
            importances are also returned as the ``feature_importances`` artifact (JSON,
            largest first). Models without importances (k-NN, say) get a note instead.

    Inputs: a model and a split (the split the model's trainer read, or one scaled the same
    way). Output: the metrics (a ``dict[str, float]``), which are also the node's metrics
    in the run record.

    Example::

        - id: evaluate
          type: model_evaluator
          depends_on: [train, scale]
          params: {metrics: [accuracy, roc_auc], feature_importance_top_k: 5}
    """

    type_name: ClassVar[str] = "model_evaluator"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "metrics": {
                "type": "array",
                "items": {"enum": [*CLASSIFICATION_METRICS, *REGRESSION_METRICS]},
                "uniqueItems": True,
                "minItems": 1,
            },
            "feature_importance_top_k": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10000,
                "default": 10,
            },
        },
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.MODEL, ArtifactKind.SPLIT)
    output: ClassVar[ArtifactKind] = ArtifactKind.METRICS
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """The metrics must all belong to one task."""
        names = params.get("metrics") or []
        kinds = {n in CLASSIFICATION_METRICS for n in names}
        if len(kinds) > 1:
            return [ParamProblem("metrics", "mixes classification and regression metrics")]
        return []

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Score the model on the test set."""
        model: TrainedModel = expect_input(inputs[0], TrainedModel, self.type_name, "a model")
        split: Split = expect_input(inputs[1], Split, self.type_name, "a split")
        params = ctx.params
        names = list(params.get("metrics") or DEFAULT_METRICS[model.task])
        started = time.perf_counter()
        # Predict with this node's CPUs, not the trainer's thread count stored in the model.
        with threadpool_limits(limits=max(1, int(ctx.num_cpus))):
            metrics, notes = evaluate(model, split, names)
        node_metrics = dict(metrics)
        artifacts: list[Any] = []
        k = int(params.get("feature_importance_top_k", 10))
        if k > 0:
            importances = get_backend(model.backend).feature_importances(model)
            if importances is None:
                notes.append(f"{model.estimator_name or model.backend} has no feature importances")
            else:
                for feature, value in top_importances(importances, k):
                    node_metrics[f"importance.{feature}"] = value
                artifacts.append(
                    {
                        "name": "feature_importances",
                        "format": "json",
                        "content": json.dumps(
                            [
                                {"feature": f, "importance": v}
                                for f, v in top_importances(importances, len(importances))
                            ],
                            indent=1,
                        ),
                    }
                )
        ctx.notes.extend(notes)
        node_metrics["rows_test"] = float(len(split.X_test))
        node_metrics["seconds"] = time.perf_counter() - started
        # NaN scores (r2 on one test row, say) stay in the output but not in the record,
        # whose metrics map is for numbers a dashboard can plot.
        recorded = {k: v for k, v in node_metrics.items() if not math.isnan(v)}
        return node_result(metrics, metrics=recorded, artifacts=artifacts)
