"""Every built-in node type's parameters: schema and cross-field errors with their field paths,
served through the registry and spec validation, and typed wiring between the node types."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from control_plane.errors import InvalidArgumentError
from control_plane.pipelines.validation import validate_spec
from ray_nodes.nodes.trainers import backend_names
from ray_nodes.registry import NodeRegistry, default_registry
from raypipe.v1.pipeline_spec_pb2 import PipelineSpec

LIBRARY = (
    "data_loader",
    "data_preprocessor",
    "train_test_split",
    "feature_scaler",
    "model_trainer",
    "model_evaluator",
    "model_saver",
)


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    return default_registry()


def problems(registry: NodeRegistry, type_name: str, params: dict[str, Any]) -> dict[str, str]:
    return {p.path: p.description for p in registry.check_params(type_name, params)}


def test_every_library_type_is_registered_with_a_documented_schema(registry: NodeRegistry) -> None:
    for name in LIBRARY:
        cls = registry.get(name)
        assert registry.origin(name) == "builtin"
        assert cls.parameter_schema["additionalProperties"] is False
        assert "Parameters:" in cls.description(), name
    assert set(backend_names()) >= {"xgboost", "lightgbm", "catboost", "sklearn"}


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("data_loader", {"path": "data/x.csv"}),
    ("data_loader", {"path": "x.bin", "format": "parquet", "columns": ["a"]}),
    ("data_loader", {"path": "x.tsv.gz", "options": {"sep": "\t", "dtype": {"a": "float32"}}}),
    ("data_loader", {"path": "x.xlsx", "options": {"sheet_name": "Sheet1", "header": 0}}),
    ("data_preprocessor", {}),
    ("data_preprocessor", {"drop_duplicates": True, "fill_missing": "median", "partitions": 4}),
    ("data_preprocessor", {"fill_missing": "constant", "fill_value": {"a": 0, "b": "x"}}),
    ("train_test_split", {"target": "y", "test_size": 0.2, "random_state": 42.0}),
    ("train_test_split", {"target": "y", "test_size": 100, "stratify": True}),
    ("feature_scaler", {"method": "minmax", "feature_range": [-1, 1]}),
    ("feature_scaler", {"method": "robust", "columns": ["a"], "quantile_range": [10, 90]}),
    (
        "model_trainer",
        {"backend": "xgboost", "task": "regression", "hyperparameters": {"max_depth": 3.0}},
    ),
    (
        "model_trainer",
        {
            "backend": "lightgbm",
            "task": "classification",
            "hyperparameters": {"feature_fraction": 0.8},
        },
    ),
    (
        "model_trainer",
        {"backend": "catboost", "task": "classification", "hyperparameters": {"depth": 4}},
    ),
    (
        "model_trainer",
        {
            "backend": "sklearn",
            "task": "classification",
            "estimator": "RandomForestClassifier",
            "hyperparameters": {"n_estimators": 10.0, "max_features": 1.0, "max_depth": None},
        },
    ),
    ("model_evaluator", {"metrics": ["r2", "rmse"], "feature_importance_top_k": 0}),
    ("model_saver", {"path": "models/churn", "format": "ubj"}),
]


@pytest.mark.parametrize(("type_name", "params"), GOOD)
def test_good_params_pass(registry: NodeRegistry, type_name: str, params: dict[str, Any]) -> None:
    assert problems(registry, type_name, params) == {}


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("data_loader", {}, "path", "required"),
    ("data_loader", {"path": "../secret.csv"}, "path", "leaves the data root"),
    ("data_loader", {"path": "x.dat"}, "format", "cannot tell the format"),
    ("data_loader", {"path": "x.csv", "format": "json"}, "format", "is not one of"),
    ("data_loader", {"path": "x.csv", "columns": []}, "columns", "should be non-empty"),
    (
        "data_loader",
        {"path": "x.csv", "options": {"storage_options": {}}},
        "options.storage_options",
        "data roots",
    ),
    (
        "data_loader",
        {"path": "x.csv", "options": {"usecols": ["a"]}},
        "options.usecols",
        "columns param",
    ),
    (
        "data_loader",
        {"path": "x.csv", "options": {"chunksize": 10}},
        "options.chunksize",
        "one dataset",
    ),
    (
        "data_loader",
        {"path": "x.csv", "options": {"sheet_name": 0}},
        "options.sheet_name",
        "csv reader",
    ),
    ("data_loader", {"path": "x.xlsx", "options": {"engine": "c"}}, "options.engine", "openpyxl"),
    ("data_loader", {"path": "x.csv", "options": {"sep": 5}}, "options.sep", "is not of type"),
    ("data_loader", {"path": "x.csv", "colums": ["a"]}, "colums", "did you mean 'columns'"),
    ("data_preprocessor", {"fill_missing": "mode"}, "fill_missing", "is not one of"),
    ("data_preprocessor", {"fill_missing": "constant"}, "fill_value", "required when"),
    (
        "data_preprocessor",
        {"fill_missing": "mean", "fill_value": 0},
        "fill_value",
        "only used with",
    ),
    ("data_preprocessor", {"partitions": 0}, "partitions", "less than the minimum"),
    ("data_preprocessor", {"drop_duplicates": "yes"}, "drop_duplicates", "is not of type"),
    ("train_test_split", {}, "target", "required"),
    ("train_test_split", {"target": "y", "test_size": 1.5}, "test_size", ""),
    ("train_test_split", {"target": "y", "test_size": 0}, "test_size", ""),
    ("train_test_split", {"target": "y", "random_state": -1}, "random_state", "minimum"),
    (
        "train_test_split",
        {"target": "y", "stratify": True, "shuffle": False},
        "stratify",
        "shuffle",
    ),
    ("feature_scaler", {"method": "zscore"}, "method", "is not one of"),
    ("feature_scaler", {"method": "standard", "feature_range": [0, 1]}, "feature_range", "minmax"),
    (
        "feature_scaler",
        {"method": "minmax", "feature_range": [1, 0]},
        "feature_range",
        "low < high",
    ),
    (
        "feature_scaler",
        {"method": "robust", "quantile_range": [10, 190]},
        "quantile_range[1]",
        "maximum",
    ),
    ("model_trainer", {"task": "classification"}, "backend", "required"),
    (
        "model_trainer",
        {"backend": "tensorflow", "task": "classification"},
        "backend",
        "is not one of",
    ),
    ("model_trainer", {"backend": "xgboost", "task": "clustering"}, "task", "is not one of"),
    ("model_trainer", {"backend": "sklearn", "task": "classification"}, "estimator", "required"),
    (
        "model_trainer",
        {"backend": "sklearn", "task": "classification", "estimator": "RandomForestClasifier"},
        "estimator",
        "did you mean RandomForestClassifier",
    ),
    (
        "model_trainer",
        {"backend": "sklearn", "task": "classification", "estimator": "Ridge"},
        "estimator",
        "for regression",
    ),
    (
        "model_trainer",
        {"backend": "sklearn", "task": "classification", "estimator": "os.system"},
        "estimator",
        "does not match",
    ),
    (
        "model_trainer",
        {"backend": "sklearn", "task": "classification", "estimator": "StackingClassifier"},
        "estimator",
        "needs ['estimators']",
    ),
    (
        "model_trainer",
        {
            "backend": "sklearn",
            "task": "classification",
            "estimator": "RandomForestClassifier",
            "hyperparameters": {"max_depth": "deep"},
        },
        "hyperparameters.max_depth",
        "must be an int",
    ),
    (
        "model_trainer",
        {
            "backend": "sklearn",
            "task": "regression",
            "estimator": "Ridge",
            "hyperparameters": {"alpah": 1},
        },
        "hyperparameters.alpah",
        "did you mean 'alpha'",
    ),
    (
        "model_trainer",
        {"backend": "xgboost", "task": "regression", "hyperparameters": {"max_dept": 3}},
        "hyperparameters.max_dept",
        "did you mean 'max_depth'",
    ),
    (
        "model_trainer",
        {"backend": "xgboost", "task": "regression", "hyperparameters": {"n_jobs": 4}},
        "hyperparameters.n_jobs",
        "num_cpus",
    ),
    (
        "model_trainer",
        {"backend": "xgboost", "task": "regression", "estimator": "XGBRegressor"},
        "estimator",
        "not used",
    ),
    (
        "model_trainer",
        {"backend": "lightgbm", "task": "regression", "hyperparameters": {"num_leafs": 3}},
        "hyperparameters.num_leafs",
        "unknown lightgbm",
    ),
    (
        "model_trainer",
        {"backend": "lightgbm", "task": "regression", "hyperparameters": {"seed": 3}},
        "hyperparameters.seed",
        "random_state",
    ),
    (
        "model_trainer",
        {"backend": "catboost", "task": "regression", "hyperparameters": {"dept": 3}},
        "hyperparameters.dept",
        "did you mean 'depth'",
    ),
    (
        "model_trainer",
        {"backend": "catboost", "task": "regression", "hyperparameters": {"thread_count": 3}},
        "hyperparameters.thread_count",
        "num_cpus",
    ),
    ("model_evaluator", {"metrics": ["accuracy", "r2"]}, "metrics", "mixes"),
    ("model_evaluator", {"metrics": ["auc"]}, "metrics[0]", "is not one of"),
    ("model_evaluator", {"feature_importance_top_k": -1}, "feature_importance_top_k", "minimum"),
    ("model_saver", {"path": "../../etc"}, "path", "leaves the artifact root"),
    ("model_saver", {"path": "/tmp/model"}, "path", "absolute"),
    ("model_saver", {"format": "pickle"}, "format", "not a model format"),
]


@pytest.mark.parametrize(("type_name", "params", "path", "fragment"), BAD)
def test_bad_params_are_reported_at_their_path(
    registry: NodeRegistry, type_name: str, params: dict[str, Any], path: str, fragment: str
) -> None:
    found = problems(registry, type_name, params)
    assert path in found, found
    assert fragment in found[path]


def spec(nodes: list[dict[str, Any]]) -> PipelineSpec:
    return json_format.ParseDict({"nodes": nodes}, PipelineSpec())


PIPELINE: list[dict[str, Any]] = [
    {"id": "load", "type": "data_loader", "params": {"path": "x.csv"}},
    {
        "id": "clean",
        "type": "data_preprocessor",
        "depends_on": ["load"],
        "params": {"drop_duplicates": True},
    },
    {
        "id": "split",
        "type": "train_test_split",
        "depends_on": ["clean"],
        "params": {"target": "y", "random_state": 0},
    },
    {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
    {
        "id": "train",
        "type": "model_trainer",
        "depends_on": ["scale"],
        "params": {"backend": "xgboost", "task": "classification"},
    },
    {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "scale"]},
    {"id": "save", "type": "model_saver", "depends_on": ["train"]},
]


def test_the_full_pipeline_validates_and_wires_by_kind(registry: NodeRegistry) -> None:
    validated = validate_spec(spec(PIPELINE), registry)
    assert validated.inputs["evaluate"] == ("train", "scale")


def test_a_trainer_fed_a_raw_dataset_is_a_validation_error(registry: NodeRegistry) -> None:
    nodes = [
        PIPELINE[0],
        {
            "id": "train",
            "type": "model_trainer",
            "depends_on": ["load"],
            "params": {"backend": "xgboost", "task": "regression"},
        },
    ]
    with pytest.raises(InvalidArgumentError) as info:
        validate_spec(spec(nodes), registry)
    fields = {v.field: v.description for v in info.value.violations}
    assert "spec.nodes[1].depends_on" in fields
    assert "needs a split input" in fields["spec.nodes[1].depends_on"]


def test_an_evaluator_without_a_split_and_bad_params_report_everything(
    registry: NodeRegistry,
) -> None:
    nodes = [
        *PIPELINE[:5],
        {
            "id": "evaluate",
            "type": "model_evaluator",
            "depends_on": ["train"],
            "params": {"metrics": ["accuracy", "rmse"]},
        },
        {"id": "save", "type": "model_saver", "depends_on": ["train"], "params": {"path": "../x"}},
    ]
    with pytest.raises(InvalidArgumentError) as info:
        validate_spec(spec(nodes), registry)
    fields = {v.field for v in info.value.violations}
    assert {
        "spec.nodes[5].depends_on",
        "spec.nodes[5].params.metrics",
        "spec.nodes[6].params.path",
    } <= fields
