"""The node library inside a real Ray: every node run as a Ray task, as the engine runs it, with
its outputs passed through the object store, compared with plain pandas / scikit-learn /
XGBoost / LightGBM / CatBoost on the same data and seeds. Validation errors are checked
through the real PipelineService."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import ray
from google.protobuf import json_format
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ray_nodes.data import Split, TrainedModel
from ray_nodes.engine import NodeResult
from ray_nodes.node import NodeContext, NodeType
from ray_nodes.nodes.data_loader import DataLoaderNode
from ray_nodes.nodes.data_preprocessor import DataPreprocessorNode
from ray_nodes.nodes.feature_scaler import FeatureScalerNode
from ray_nodes.nodes.model_evaluator import ModelEvaluatorNode
from ray_nodes.nodes.model_saver import ModelSaverNode, load_model
from ray_nodes.nodes.model_trainer import ModelTrainerNode
from ray_nodes.nodes.train_test_split import TrainTestSplitNode
from ray_nodes.paths import PathEscapeError
from raypipe.v1 import pipeline_service_pb2 as pb
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from tests.integration.conftest import Api, expect_error
from tests.unit.test_node_preprocessor import messy_frame, pandas_result


@ray.remote(num_cpus=1, num_returns=3)
def _run_node(node: NodeType, ctx: NodeContext, *inputs: Any) -> tuple[Any, list[str], dict]:
    """Run a node in a Ray task as the engine does (ObjectRef inputs arrive resolved);
    returns its output, its notes and its metrics as three objects."""
    result = node.run(ctx, list(inputs))
    if isinstance(result, NodeResult):
        return result.output, ctx.notes, dict(result.metrics)
    return result, ctx.notes, {}


class Runner:
    """Runs nodes as Ray tasks with contexts for one run."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.artifacts = tmp_path / "artifacts"
        self.data.mkdir()
        self.notes: dict[str, ray.ObjectRef] = {}
        self.metrics: dict[str, ray.ObjectRef] = {}

    def ctx(self, node_id: str, params: dict[str, Any], cpus: float = 1.0) -> NodeContext:
        return NodeContext(
            run_id="run1",
            run_name="runs/run1",
            pipeline_id="nodes-test",
            node_id=node_id,
            attempt=1,
            params=params,
            num_cpus=cpus,
            artifact_root=str(self.artifacts),
            data_roots=(self.data,),
        )

    def ref(
        self, node: NodeType, node_id: str, params: dict[str, Any], *inputs: Any, cpus: float = 1
    ) -> ray.ObjectRef:
        """The ref of the node's output; its notes and metrics are in :attr:`notes` and
        :attr:`metrics`."""
        ctx = self.ctx(node_id, params, cpus)
        output, notes, metrics = _run_node.options(
            num_cpus=cpus, name=f"nodes-test/{node_id}"
        ).remote(node, ctx, *inputs)
        self.notes[node_id] = notes
        self.metrics[node_id] = metrics
        return output

    def run(self, node: NodeType, node_id: str, params: dict[str, Any], *inputs: Any) -> Any:
        return ray.get(self.ref(node, node_id, params, *inputs))


@pytest.fixture
def runner(ray_head: Any, tmp_path: Path) -> Runner:
    """Nodes run on the session's local Ray head (2 CPUs), which this process joins."""
    if not ray.is_initialized():
        ray.init(address=ray_head.address, log_to_driver=False, configure_logging=False)
    return Runner(tmp_path)


# -- fan-out nodes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "options"),
    [
        (2, {"drop_duplicates": True, "fill_missing": "median"}),
        (3, {"drop_duplicates": True, "fill_missing": "most_frequent"}),
        (2, {"drop_duplicates": True, "drop_missing": True}),
    ],
)
def test_preprocessor_fans_out_and_equals_pandas(
    runner: Runner, partitions: int, options: dict[str, Any]
) -> None:
    frame = messy_frame(3000, seed=5)
    ref = ray.put(frame)
    got = runner.run(DataPreprocessorNode(), "clean", {**options, "partitions": partitions}, ref)
    expected = pandas_result(
        frame,
        options.get("drop_duplicates", False),
        options.get("drop_missing", False),
        options.get("fill_missing"),
        None,
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_preprocessor_mean_fill_across_partitions(runner: Runner) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(5000, 5)), columns=list("abcde"))
    frame = pd.concat([frame, frame.sample(500, random_state=1)])  # duplicates in every part
    frame = frame.mask(rng.random(frame.shape) < 0.05)
    got = runner.run(
        DataPreprocessorNode(),
        "clean",
        {"drop_duplicates": True, "fill_missing": "mean", "partitions": 2},
        ray.put(frame),
    )
    expected = pandas_result(frame, True, False, "mean", None)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-13)


def test_scaler_fans_out_and_equals_sklearn(runner: Runner) -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(loc=50, size=(4000, 3)), columns=["u", "v", "w"])
    y = pd.Series(rng.integers(0, 2, 4000), name="y")
    split = Split(X.iloc[:3000], X.iloc[3000:], y.iloc[:3000], y.iloc[3000:], "y")
    for method, reference in (("standard", StandardScaler()), ("minmax", None)):
        out = runner.run(
            FeatureScalerNode(), "scale", {"method": method, "partitions": 2}, ray.put(split)
        )
        if reference is None:
            from sklearn.preprocessing import MinMaxScaler

            reference = MinMaxScaler()
        reference.fit(split.X_train)
        np.testing.assert_allclose(
            out.X_test.to_numpy(), reference.transform(split.X_test), rtol=1e-12, atol=1e-12
        )


# -- trainers against plain scripts ------------------------------------------------------------

BACKENDS: dict[str, dict[str, Any]] = {
    "xgboost": {"hyperparameters": {"n_estimators": 40, "max_depth": 3}},
    "lightgbm": {"hyperparameters": {"n_estimators": 40, "num_leaves": 15}},
    "catboost": {"hyperparameters": {"iterations": 40, "depth": 4}},
    "sklearn": {"hyperparameters": {"n_estimators": 25}},
}


def plain_estimator(backend: str, task: str, seed: int) -> Any:
    """The estimator a plain script would build with the same settings (one thread)."""
    classify = task == "classification"
    hp = BACKENDS[backend]["hyperparameters"]
    if backend == "xgboost":
        import xgboost

        cls = xgboost.XGBClassifier if classify else xgboost.XGBRegressor
        return cls(n_jobs=1, random_state=seed, **hp)
    if backend == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
        return cls(n_jobs=1, random_state=seed, verbose=-1, **hp)
    if backend == "catboost":
        import catboost

        cls = catboost.CatBoostClassifier if classify else catboost.CatBoostRegressor
        return cls(thread_count=1, random_seed=seed, verbose=False, allow_writing_files=False, **hp)
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if classify else RandomForestRegressor
    return cls(random_state=seed, **hp)


def plain_metrics(task: str, estimator: Any, X_test: Any, y_test: Any) -> dict[str, float]:
    predicted = np.asarray(estimator.predict(X_test)).ravel()
    if task == "regression":
        return {
            "r2": skm.r2_score(y_test, predicted),
            "rmse": skm.root_mean_squared_error(y_test, predicted),
            "mae": skm.mean_absolute_error(y_test, predicted),
        }
    return {
        "accuracy": skm.accuracy_score(y_test, predicted),
        "precision": skm.precision_score(y_test, predicted),
        "recall": skm.recall_score(y_test, predicted),
        "f1": skm.f1_score(y_test, predicted),
        "roc_auc": skm.roc_auc_score(y_test, estimator.predict_proba(X_test)[:, 1]),
    }


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_backend_equals_a_plain_script(runner: Runner, backend: str, task: str) -> None:
    loader = load_breast_cancer if task == "classification" else load_diabetes
    frame = loader(as_frame=True).frame
    seed = 42
    split_params = {"target": "target", "random_state": seed, "stratify": task == "classification"}
    split = runner.ref(TrainTestSplitNode(), "split", split_params, ray.put(frame))
    scaled = runner.ref(FeatureScalerNode(), "scale", {}, split)
    params: dict[str, Any] = {"backend": backend, "task": task, "random_state": seed}
    params.update(BACKENDS[backend])
    if backend == "sklearn":
        params["estimator"] = (
            "RandomForestClassifier" if task == "classification" else "RandomForestRegressor"
        )
    model = runner.ref(ModelTrainerNode(), "train", params, scaled)
    metrics = ray.get(runner.ref(ModelEvaluatorNode(), "evaluate", {}, model, scaled))

    X, y = frame.drop(columns=["target"]), frame["target"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y if task == "classification" else None
    )
    scaler = StandardScaler().set_output(transform="pandas").fit(X_train)
    plain = plain_estimator(backend, task, seed).fit(scaler.transform(X_train), y_train)
    expected = plain_metrics(task, plain, scaler.transform(X_test), y_test)
    assert metrics == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert ray.get(runner.notes["evaluate"]) == []
    train_metrics = ray.get(runner.metrics["train"])
    assert train_metrics["rows_train"] == len(X_train)
    assert any(k.startswith("train_") and k != "train_seconds" for k in train_metrics)
    assert {k: v for k, v in ray.get(runner.metrics["evaluate"]).items() if k in metrics} == metrics
    trained: TrainedModel = ray.get(model)
    assert trained.feature_names == tuple(X.columns)
    assert trained.scaler is not None
    assert trained.scaler.method == "standard"


def test_saver_round_trip_predicts_identically(runner: Runner) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    split = runner.ref(
        TrainTestSplitNode(), "split", {"target": "target", "random_state": 0}, ray.put(frame)
    )
    scaled = runner.ref(FeatureScalerNode(), "scale", {"method": "robust"}, split)
    for backend, extra in BACKENDS.items():
        params = {"backend": backend, "task": "classification", **extra}
        if backend == "sklearn":
            params["estimator"] = "RandomForestClassifier"
        model = runner.ref(ModelTrainerNode(), f"train_{backend}", params, scaled)
        ray.get(runner.ref(ModelSaverNode(), "save", {"path": f"m/{backend}"}, model))
        assert ray.get(runner.notes["save"]) == [
            f"saved {backend} model to {runner.artifacts.resolve() / 'm' / backend}"
        ]
        trained: TrainedModel = ray.get(model)
        loaded = load_model(runner.artifacts / "m" / backend)
        X_test = ray.get(scaled).X_test
        np.testing.assert_array_equal(loaded.predict(X_test), trained.predict(X_test))
        np.testing.assert_array_equal(loaded.predict_proba(X_test), trained.predict_proba(X_test))
        # The manifest carries the scaler, so raw rows can be scaled for the loaded model.
        raw_test = ray.get(split).X_test
        assert loaded.scaler is not None
        pd.testing.assert_frame_equal(loaded.scaler.transform(raw_test), X_test)


# -- the whole chain from a file ---------------------------------------------------------------


def test_pipeline_from_csv_equals_plain_script(runner: Runner) -> None:
    rng = np.random.default_rng(11)
    n = 4000
    frame = pd.DataFrame(rng.normal(size=(n, 6)).round(2), columns=[f"f{i}" for i in range(6)])
    frame["label"] = (frame["f0"] + frame["f1"] * frame["f2"] > 0).astype(int)
    frame = pd.concat([frame, frame.sample(300, random_state=3)], ignore_index=True)
    frame[["f3", "f4"]] = frame[["f3", "f4"]].mask(rng.random((len(frame), 2)) < 0.05)
    frame.to_csv(runner.data / "train.csv", index=False)

    loaded = runner.ref(DataLoaderNode(), "load", {"path": "train.csv"})
    clean = runner.ref(
        DataPreprocessorNode(),
        "clean",
        {"drop_duplicates": True, "fill_missing": "median", "partitions": 2},
        loaded,
    )
    split = runner.ref(
        TrainTestSplitNode(),
        "split",
        {"target": "label", "random_state": 1, "stratify": True},
        clean,
    )
    scaled = runner.ref(FeatureScalerNode(), "scale", {"method": "minmax"}, split)
    hp = {"n_estimators": 30, "max_depth": 4}
    model = runner.ref(
        ModelTrainerNode(),
        "train",
        {"backend": "xgboost", "task": "classification", "hyperparameters": hp, "random_state": 5},
        scaled,
        cpus=2,
    )
    evaluated = runner.ref(
        ModelEvaluatorNode(), "evaluate", {"feature_importance_top_k": 2}, model, scaled
    )
    saved = runner.ref(ModelSaverNode(), "save", {"path": "models/xgb"}, model)
    metrics = ray.get(evaluated)
    ray.get(saved)

    import xgboost
    from sklearn.preprocessing import MinMaxScaler

    plain = pd.read_csv(runner.data / "train.csv").drop_duplicates()
    plain = plain.fillna(plain.median(numeric_only=True))
    pd.testing.assert_frame_equal(ray.get(clean), plain, check_exact=True)
    clean_metrics = ray.get(runner.metrics["clean"])
    assert clean_metrics["duplicates_dropped"] == len(frame) - len(plain)
    assert clean_metrics["partitions"] == 2
    X, y = plain.drop(columns=["label"]), plain["label"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=1, stratify=y)
    scaler = MinMaxScaler().set_output(transform="pandas").fit(X_train)
    estimator = xgboost.XGBClassifier(n_jobs=2, random_state=5, **hp)
    estimator.fit(scaler.transform(X_train), y_train)
    assert metrics == pytest.approx(
        plain_metrics("classification", estimator, scaler.transform(X_test), y_test), rel=1e-12
    )
    reloaded = load_model(runner.artifacts / "models" / "xgb")
    np.testing.assert_array_equal(
        reloaded.predict(scaler.transform(X_test)), estimator.predict(scaler.transform(X_test))
    )


def test_path_escapes_are_refused_at_run_time(runner: Runner, tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("a\n1\n")
    (runner.data / "inside.csv").symlink_to(tmp_path / "secret.csv")
    for path in (str(tmp_path / "secret.csv"), "inside.csv"):
        with pytest.raises(ray.exceptions.RayTaskError) as info:
            runner.run(DataLoaderNode(), "load", {"path": path})
        assert isinstance(info.value.cause, PathEscapeError)
        assert "outside every data root" in str(info.value.cause)


# -- through the API ---------------------------------------------------------------------------


def _spec(nodes: Sequence[dict[str, Any]]) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict({"nodes": list(nodes)}, pipeline_spec_pb2.PipelineSpec())


def test_api_lists_the_library_and_rejects_bad_specs_with_field_paths(api: Api) -> None:
    types = {t.type: t for t in api.pipelines.ListNodeTypes(pb.ListNodeTypesRequest()).node_types}
    trainer = json_format.MessageToDict(types["model_trainer"].parameter_schema)
    assert set(trainer["properties"]["backend"]["enum"]) >= {
        "xgboost",
        "lightgbm",
        "catboost",
        "sklearn",
    }
    for name in ("data_loader", "data_preprocessor", "train_test_split", "feature_scaler",
                 "model_evaluator", "model_saver"):  # fmt: skip
        assert types[name].description

    spec = _spec(
        [
            {"id": "load", "type": "data_loader", "params": {"path": "../../etc/passwd.csv"}},
            {"id": "clean", "type": "data_preprocessor", "depends_on": ["load"],
             "params": {"fill_missing": "constant"}},
            {"id": "train", "type": "model_trainer", "depends_on": ["clean"],
             "params": {"backend": "sklearn", "task": "classification",
                        "estimator": "RandomForestClassifier",
                        "hyperparameters": {"n_estimator": 10}}},
        ]
    )  # fmt: skip
    details = expect_error(
        api.pipelines.ValidatePipelineSpec,
        pb.ValidatePipelineSpecRequest(spec=spec),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(details.violations) >= {
        "spec.nodes[0].params.path",
        "spec.nodes[1].params.fill_value",
        "spec.nodes[2].params.hyperparameters.n_estimator",
        "spec.nodes[2].depends_on",  # a trainer needs a split, not a dataset
    }
    assert "n_estimators" in details.violations["spec.nodes[2].params.hyperparameters.n_estimator"]


# -- through the engine ------------------------------------------------------------------------


def test_a_run_through_the_server_equals_the_plain_script(
    run_api: Api, run_plane: Any, tmp_path: Path
) -> None:
    from tests.integration.test_runs import register, start, wait

    frame = load_breast_cancer(as_frame=True).frame
    frame = pd.concat([frame, frame.sample(40, random_state=0)], ignore_index=True)
    frame.loc[frame.sample(frac=0.05, random_state=1).index, "mean radius"] = np.nan
    frame.to_csv(tmp_path / "cancer.csv", index=False)  # tmp_path is the server's data root
    hp = {"n_estimators": 30, "max_depth": 3}
    spec = _spec(
        [
            {"id": "load", "type": "data_loader", "params": {"path": "cancer.csv"}},
            {"id": "clean", "type": "data_preprocessor", "depends_on": ["load"],
             "params": {"drop_duplicates": True, "fill_missing": "median", "partitions": 2}},
            {"id": "split", "type": "train_test_split", "depends_on": ["clean"],
             "params": {"target": "target", "random_state": 3, "stratify": True}},
            {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
            {"id": "train", "type": "model_trainer", "depends_on": ["scale"],
             "params": {"backend": "xgboost", "task": "classification", "hyperparameters": hp}},
            {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "scale"],
             "params": {"feature_importance_top_k": 3}},
            {"id": "save", "type": "model_saver", "depends_on": ["train"],
             "params": {"path": "{{ parameters.model_dir }}"}},
        ]
    )  # fmt: skip
    spec.parameters["model_dir"].string_value = "models/cancer"
    register(run_api, "cancer", spec)
    run = wait(run_api, start(run_api, "cancer").name, timeout=240)
    nodes = {n.node_id: n for n in run.nodes}
    assert run.state == run_pb2.Run.State.STATE_SUCCEEDED, run.error.message
    metrics = dict(nodes["evaluate"].metrics)
    assert sum(k.startswith("importance.") for k in metrics) == 3
    assert {a.name for a in nodes["evaluate"].artifacts} >= {"output", "feature_importances"}

    import xgboost

    plain = pd.read_csv(tmp_path / "cancer.csv").drop_duplicates()
    assert nodes["clean"].metrics["duplicates_dropped"] == len(frame) - len(plain)
    plain = plain.fillna(plain.median(numeric_only=True))
    X, y = plain.drop(columns=["target"]), plain["target"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=3, stratify=y)
    scaler = StandardScaler().set_output(transform="pandas").fit(X_train)
    estimator = xgboost.XGBClassifier(n_jobs=1, random_state=0, **hp)
    estimator.fit(scaler.transform(X_train), y_train)
    expected = plain_metrics("classification", estimator, scaler.transform(X_test), y_test)
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, rel=1e-9)

    model_ref = next(a for a in nodes["save"].artifacts if a.name == "model")
    assert model_ref.uri.endswith("models/cancer/model.json")
    saved = load_model(Path(model_ref.uri).parent)
    assert saved.scaler is not None
    np.testing.assert_array_equal(
        saved.predict(saved.scaler.transform(X_test)), estimator.predict(scaler.transform(X_test))
    )
