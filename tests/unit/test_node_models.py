"""Trainer, evaluator and saver details on small data, in-process: label handling, metrics on
multiclass data, hyperparameter coercion, saving and safe loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from ray_nodes.data import Split, TrainedModel, output_of
from ray_nodes.node import NodeContext
from ray_nodes.nodes.model_evaluator import ModelEvaluatorNode
from ray_nodes.nodes.model_saver import ModelSaverNode, load_model
from ray_nodes.nodes.model_trainer import ModelTrainerNode, encode_labels
from ray_nodes.nodes.trainers import integral_floats_to_int


def ctx(node_id: str, params: dict[str, Any], tmp_path: Path | None = None) -> NodeContext:
    return NodeContext(
        "r1", "runs/r1", "p", node_id, 1, params, 1.0, artifact_root=str(tmp_path or "")
    )


@pytest.fixture(scope="module")
def iris_split() -> Split:
    """Iris with string labels: three classes, none of them 0..2."""
    data = load_iris(as_frame=True)
    X = data.data
    y = pd.Series(np.asarray(data.target_names)[data.target], name="species", dtype=object)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    return Split(X_train, X_test, y_train, y_test, "species", "classification")


def train(split: Split, backend: str, **params: Any) -> TrainedModel:
    params = {"backend": backend, "task": "classification", "random_state": 0, **params}
    return output_of(ModelTrainerNode().run(ctx("train", params), [split]))


@pytest.mark.parametrize(
    ("backend", "extra"),
    [
        ("xgboost", {"hyperparameters": {"n_estimators": 20.0, "max_depth": 3.0}}),
        ("lightgbm", {"hyperparameters": {"n_estimators": 20, "min_data_in_leaf": 5}}),
        ("catboost", {"hyperparameters": {"iterations": 20}}),
        ("sklearn", {"estimator": "LogisticRegression", "hyperparameters": {"max_iter": 500.0}}),
    ],
)
def test_string_labels_multiclass_metrics_and_round_trip(
    iris_split: Split, backend: str, extra: dict[str, Any], tmp_path: Path
) -> None:
    model = train(iris_split, backend, **extra)
    assert model.classes == ("setosa", "versicolor", "virginica")
    assert model.label_encoded == (backend in ("xgboost", "lightgbm"))
    predicted = model.predict(iris_split.X_test)
    assert set(predicted) <= set(model.classes)
    proba = model.predict_proba(iris_split.X_test)
    y = iris_split.y_test
    result = ModelEvaluatorNode().run(
        ctx("evaluate", {"metrics": ["accuracy", "f1", "roc_auc", "log_loss"]}),
        [model, iris_split],
    )
    assert result.output == {
        "accuracy": skm.accuracy_score(y, predicted),
        "f1": skm.f1_score(y, predicted, average="weighted"),
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted"),
        "log_loss": skm.log_loss(y, proba, labels=list(model.classes)),
    }
    ModelSaverNode().run(ctx("save", {"path": f"m/{backend}"}, tmp_path), [model])
    loaded = load_model(tmp_path / "m" / backend)
    np.testing.assert_array_equal(loaded.predict(iris_split.X_test), predicted)
    np.testing.assert_array_equal(loaded.predict_proba(iris_split.X_test), proba)
    # The model keeps a few training rows as its input example, and the saved copy too.
    assert len(model.input_example) == 5
    assert list(model.input_example[0]) == list(model.feature_names)
    assert model.input_example[0] == iris_split.X_train.iloc[0].to_dict()
    assert loaded.input_example == model.input_example


def test_manifest_and_tamper_detection(iris_split: Split, tmp_path: Path) -> None:
    model = train(iris_split, "xgboost", hyperparameters={"n_estimators": 5})
    node_ctx = ctx("save", {"path": "m", "format": "ubj"}, tmp_path)
    result = ModelSaverNode().run(node_ctx, [model])
    assert result.output is None
    assert [a["name"] for a in result.artifacts] == ["model", "manifest"]
    assert result.artifacts[0]["uri"] == str((tmp_path / "m" / "model.ubj").resolve())
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert result.artifacts[0]["sha256"] == manifest["sha256"]
    assert manifest["library"] == "xgboost"
    assert manifest["format"] == "ubj"
    assert manifest["feature_names"] == list(iris_split.feature_names)
    assert manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert manifest["run_id"] == "r1"
    assert manifest["node_id"] == "save"
    assert len(manifest["sha256"]) == 64
    assert manifest["library_version"]
    assert any("saved xgboost model" in note for note in node_ctx.notes)
    with open(tmp_path / "m" / "model.ubj", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="does not match its manifest"):
        load_model(tmp_path / "m")


def test_saver_refuses_escapes_and_foreign_formats(iris_split: Split, tmp_path: Path) -> None:
    model = train(iris_split, "lightgbm", hyperparameters={"n_estimators": 5})
    with pytest.raises(ValueError, match="leaves the artifact root"):
        ModelSaverNode().run(ctx("save", {"path": "../out"}, tmp_path / "root"), [model])
    with pytest.raises(ValueError, match="saves as txt, not 'json'"):
        ModelSaverNode().run(ctx("save", {"path": "m", "format": "json"}, tmp_path), [model])
    ModelSaverNode().run(ctx("save", {}, tmp_path), [model])
    assert (tmp_path / "models" / "p" / "r1" / "save" / "model.txt").is_file()


def test_skops_loading_refuses_types_outside_sklearn(tmp_path: Path) -> None:
    import skops.io

    from ray_nodes.nodes.trainers.sklearn_backend import SklearnBackend

    skops.io.dump({"f": pd.Timestamp("2020-01-01")}, str(tmp_path / "x.skops"))
    with pytest.raises(ValueError, match="outside scikit-learn"):
        SklearnBackend().load(tmp_path / "x.skops", "skops", {})


def test_thread_count_and_seed_come_from_the_node(iris_split: Split) -> None:
    node_ctx = ctx("train", {"backend": "sklearn", "task": "classification",
                             "estimator": "RandomForestClassifier", "random_state": 7,
                             "hyperparameters": {"n_estimators": 3}})  # fmt: skip
    node_ctx.num_cpus = 2.0
    model = output_of(ModelTrainerNode().run(node_ctx, [iris_split]))
    assert model.estimator.n_jobs == 2
    assert model.estimator.random_state == 7
    assert model.estimator.n_estimators == 3
    node_ctx.params = {"backend": "catboost", "task": "classification", "random_state": 7,
                       "hyperparameters": {"iterations": 3}}  # fmt: skip
    params = output_of(ModelTrainerNode().run(node_ctx, [iris_split])).estimator.get_params()
    assert params["thread_count"] == 2
    assert params["random_seed"] == 7


def test_training_data_errors_are_clear(iris_split: Split) -> None:
    with_text = Split(
        iris_split.X_train.assign(note="x"), iris_split.X_test, iris_split.y_train,
        iris_split.y_test, "species",
    )  # fmt: skip
    with pytest.raises(TypeError, match=r"columns \['note'\] are not numeric"):
        train(with_text, "xgboost")
    continuous = Split(
        iris_split.X_train, iris_split.X_test, iris_split.X_train["sepal length (cm)"] + 0.01,
        iris_split.y_test, "x", "regression",
    )  # fmt: skip
    with pytest.raises(ValueError, match="use task: regression"):
        train(continuous, "lightgbm")
    with pytest.raises(ValueError, match=r"hyperparameters\.max_dept"):
        train(iris_split, "xgboost", hyperparameters={"max_dept": 3})


def test_label_encoding_and_number_coercion() -> None:
    classes, y, encoded = encode_labels(pd.Series([3, 1, 3, 7]), needs_indices=True)
    assert classes == (1, 3, 7)
    assert encoded
    assert y.tolist() == [1, 0, 1, 2]
    classes, y, encoded = encode_labels(pd.Series([1, 0, 1]), needs_indices=True)
    assert classes == (0, 1)
    assert not encoded
    assert integral_floats_to_int({"a": 6.0, "b": [1.0, 2.5], "c": True}) == {
        "a": 6,
        "b": [1, 2.5],
        "c": True,
    }


def test_regression_metrics_and_importances(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["u", "v", "w"])
    y = pd.Series(3 * X["u"] - X["w"] + rng.normal(scale=0.1, size=200), name="t")
    split = Split(X.iloc[:150], X.iloc[150:], y.iloc[:150], y.iloc[150:], "t", "regression")
    params = {"backend": "sklearn", "task": "regression", "estimator": "Ridge"}
    model = output_of(ModelTrainerNode().run(ctx("train", params), [split]))
    node_ctx = ctx("evaluate", {"feature_importance_top_k": 2})
    result = ModelEvaluatorNode().run(node_ctx, [model, split])
    predicted = model.predict(split.X_test)
    assert result.output == {
        "r2": skm.r2_score(split.y_test, predicted),
        "rmse": skm.root_mean_squared_error(split.y_test, predicted),
        "mae": skm.mean_absolute_error(split.y_test, predicted),
    }
    # The scores are the node's metrics too, with the top-k importances (|coef_| for Ridge).
    assert {k: result.metrics[k] for k in result.output} == result.output
    assert set(result.metrics) >= {"importance.u", "importance.w"}
    assert "importance.v" not in result.metrics
    (artifact,) = result.artifacts
    ranked = json.loads(artifact["content"])
    assert artifact["name"] == "feature_importances"
    assert [r["feature"] for r in ranked] == ["u", "w", "v"]
    with pytest.raises(ValueError, match="do not apply to regression"):
        ModelEvaluatorNode().run(ctx("evaluate", {"metrics": ["accuracy"]}), [model, split])
    knn = output_of(
        ModelTrainerNode().run(
            ctx("train", {**params, "estimator": "KNeighborsRegressor"}), [split]
        )
    )
    node_ctx = ctx("evaluate", {})
    ModelEvaluatorNode().run(node_ctx, [knn, split])
    assert any("no feature importances" in note for note in node_ctx.notes)
