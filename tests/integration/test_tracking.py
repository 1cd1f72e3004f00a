"""MLflow tracking through the real control plane, Ray and a real MLflow store.

A run of a tabular pipeline becomes an MLflow run with its tags, parameters, metrics (the
evaluator's scores, the lightning trainer's per-epoch curve with its steps) and the models,
logged with their flavours (xgboost and pytorch); the xgboost model loaded through
``mlflow.pyfunc`` predicts what the native model saved by ``model_saver`` predicts, and is
registered. A failed run is mirrored as FAILED; a pipeline can switch tracking off; a tracking
server that is down when the run starts does not fail the run, which is recorded once the
server is up.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2
from sklearn.datasets import load_breast_cancer

from control_plane.server import ControlPlane, ServerConfig
from control_plane.tracking import default_tracking_uri
from ray_nodes.nodes.model_saver import load_model
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from raypipe.v1 import run_service_pb2 as rpb
from tests.integration.conftest import Api
from tests.integration.test_runs import register, start, wait

T = TypeVar("T")
RunState = run_pb2.Run.State
MAX_EPOCHS = 3
#: How long the tracker retries a record (the unreachable-server test needs minutes).
TRACKING_RETRY_FOR = float(os.environ.get("RAYPIPE_TEST_TRACKING_RETRY_FOR", "180"))


def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy (deadline, never elapsed-time asserts)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _plane(tmp_path: Path, ray_head: Any, tracking_uri: str) -> ControlPlane:
    return ControlPlane(
        ServerConfig(
            data_dir=tmp_path / "data",
            port=0,
            ray_address=ray_head.address,
            data_roots=(tmp_path,),
            tracking_uri=tracking_uri,
            tracking_retry_for=TRACKING_RETRY_FOR,
        )
    )


@pytest.fixture
def tracked(tmp_path: Path, ray_head: Any) -> Iterator[tuple[ControlPlane, Api]]:
    """A control plane recording to the default SQLite MLflow store in its data directory."""
    plane = _plane(tmp_path, ray_head, default_tracking_uri(tmp_path / "data"))
    plane.start()
    api = Api.connect(f"127.0.0.1:{plane.port}")
    yield plane, api
    api.channel.close()
    plane.stop(grace=1)


def _spec(**tracking: Any) -> pipeline_spec_pb2.PipelineSpec:
    nn = {"hidden_layer_sizes": [8], "max_epochs": MAX_EPOCHS, "patience": MAX_EPOCHS}
    nodes: list[dict[str, Any]] = [
        {"id": "load", "type": "data_loader", "params": {"path": "cancer.csv"}},
        {"id": "split", "type": "train_test_split", "depends_on": ["load"],
         "params": {"target": "target", "test_size": 0.25, "random_state": 0, "stratify": True}},
        {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
        {"id": "train", "type": "model_trainer", "depends_on": ["scale"],
         "params": {"backend": "xgboost", "task": "classification", "random_state": 0,
                    "hyperparameters": {"n_estimators": 20, "verbosity": 2,
                                        "max_depth": "{{ parameters.max_depth }}"}}},
        {"id": "net", "type": "model_trainer", "depends_on": ["scale"],
         "params": {"backend": "lightning", "task": "classification", "random_state": 0,
                    "hyperparameters": nn}},
        {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "net", "scale"],
         "params": {"input_from": {"model": "train", "split": "scale"}}},
        {"id": "save", "type": "model_saver", "depends_on": ["train"],
         "params": {"path": "{{ run.name }}", "register_as": "cancer-xgb"}},
        {"id": "save_net", "type": "model_saver", "depends_on": ["net"],
         "params": {"path": "models/net"}},
    ]  # fmt: skip
    spec = {"nodes": nodes, "parameters": {"max_depth": 3}, "tracking": tracking}
    return json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())


def _noop_spec(**tracking: Any) -> pipeline_spec_pb2.PipelineSpec:
    spec = {"nodes": [{"id": "a", "type": "noop"}], "tracking": tracking}
    return json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())


def _recorded(api: Api, name: str, models: int = 0) -> Callable[[], run_pb2.Run | None]:
    def check() -> run_pb2.Run | None:
        run = api.runs.GetRun(rpb.GetRunRequest(name=name)).run
        assert not run.tracking.problem, run.tracking.problem  # fail at once, saying why
        done = run.tracking.run_id and len(run.tracking.model_uris) >= models
        return run if done else None

    return check


def _terminated(client: Any, run_id: str) -> Callable[[], Any]:
    def check() -> Any:
        found = client.get_run(run_id)
        return found if found.info.status != "RUNNING" else None

    return check


def test_run_recorded_with_params_metrics_and_models(
    tracked: tuple[ControlPlane, Api], tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    _, api = tracked
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    register(api, "cancer", _spec())
    run = start(api, "cancer", parameters={"max_depth": struct_pb2.Value(number_value=2)})
    final = wait(api, run.name, timeout=240)
    assert final.state == RunState.STATE_SUCCEEDED, final.error.message

    recorded = until(_recorded(api, run.name, models=2), 180, "both models in MLflow")
    info = recorded.tracking
    assert not info.problem, info.problem
    assert info.url == f"runs:/{info.run_id}"
    assert info.tracking_uri == default_tracking_uri(tmp_path / "data")
    assert info.registered_models == ["cancer-xgb/1"]
    client = MlflowClient(info.tracking_uri)
    mlrun = until(_terminated(client, info.run_id), 60, "the MLflow run's final status")
    assert mlrun.info.status == "FINISHED"
    assert client.get_experiment(info.experiment_id).name == "cancer"

    tags = mlrun.data.tags
    assert tags["raypipe.run"] == run.name
    assert tags["raypipe.pipeline_version"] == "pipelines/cancer/versions/1"
    params = mlrun.data.params
    assert params["parameters.max_depth"] == "2"
    assert params["train.hyperparameters.max_depth"] == "2"  # the template, resolved
    assert params["train.backend"] == "xgboost"
    assert params["save.register_as"] == "cancer-xgb"
    # MLflow's params are what the nodes received: templates resolved as the engine resolves
    # them (the saver wrote where its path said), input_from (wiring) not among them.
    run_id = run.name.removeprefix("runs/")
    assert params["save.path"] == run_id
    saved = {n.node_id: n for n in final.nodes}["save"]
    model_file = Path(next(a.uri for a in saved.artifacts if a.name == "model"))
    assert model_file.parent == tmp_path / "data" / "artifacts" / params["save.path"]
    assert not [k for k in params if "input_from" in k]
    assert params["evaluate.type"] == "model_evaluator"
    metrics = mlrun.data.metrics
    evaluate = {n.node_id: n for n in final.nodes}["evaluate"].metrics
    assert metrics["evaluate.accuracy"] == pytest.approx(evaluate["accuracy"])
    assert "train.duration_seconds" in metrics
    curve = client.get_metric_history(info.run_id, "net.progress.train_loss")
    assert sorted(m.step for m in curve) == list(range(1, len(curve) + 1))
    assert 1 <= len(curve) <= MAX_EPOCHS

    # Each model_saver's model is an MLflow logged model of the run, found by MLflow's own search.
    mlflow.set_tracking_uri(info.tracking_uri)
    logged = mlflow.search_logged_models(experiment_ids=[info.experiment_id], output_format="list")
    assert sorted(m.name for m in logged) == ["save", "save_net"]
    assert {m.source_run_id for m in logged} == {info.run_id}
    by_node = {m.name: m for m in logged}
    assert {(m.node_id, m.model_uri) for m in info.models} == {
        (m.name, f"models:/{m.model_id}") for m in logged
    }
    assert list(info.model_uris) == [m.model_uri for m in info.models]
    xgb = by_node["save"]
    assert xgb.params["train.hyperparameters.max_depth"] == "2"  # the run's params, MLflow's way
    # The evaluator's scores are on the model it evaluated.
    scores = {m.key: m.value for m in xgb.metrics or ()}
    assert scores["evaluate.accuracy"] == pytest.approx(evaluate["accuracy"])
    assert scores["evaluate.f1"] == pytest.approx(evaluate["f1"])

    # The xgboost model through mlflow.pyfunc predicts what the native saved model predicts.
    native = load_model(model_file.parent)
    rows = frame.drop(columns=["target"]).sample(40, random_state=1).reset_index(drop=True)
    scaled = native.scaler.transform(rows) if native.scaler is not None else rows
    served = mlflow.pyfunc.load_model(xgb.model_uri)
    assert served.metadata.signature is not None
    assert served.metadata.saved_input_example_info is not None
    assert "xgboost" in served.metadata.flavors
    got = np.asarray(served.predict(native.features(scaled)))
    np.testing.assert_array_equal(got, native.predict(scaled))
    # The runs:/ form users may hold resolves to the same logged model.
    by_run = mlflow.pyfunc.load_model(f"runs:/{info.run_id}/save")
    np.testing.assert_array_equal(np.asarray(by_run.predict(native.features(scaled))), got)
    version = client.get_model_version("cancer-xgb", "1")
    assert version.run_id == info.run_id
    assert version.source == xgb.model_uri

    net = mlflow.pyfunc.load_model(by_node["save_net"].model_uri)
    assert "pytorch" in net.metadata.flavors
    logits = np.asarray(net.predict(native.features(scaled).to_numpy(dtype=np.float32)))
    assert logits.shape[0] == len(rows)
    shown = _cli(tracked[0], "runs", "get", run.name)
    assert f"save: {xgb.model_uri}" in shown

    # Each node attempt's log is an artifact of the MLflow run, as GetNodeLogs reads it.
    attached = {
        a.path
        for node in client.list_artifacts(info.run_id, "logs")
        for a in client.list_artifacts(info.run_id, node.path)
    }
    with_lines = set()
    for node in final.nodes:
        page = api.runs.GetNodeLogs(
            rpb.GetNodeLogsRequest(name=f"{run.name}/nodes/{node.node_id}/attempts/1/logs")
        )
        if page.lines:
            with_lines.add(f"logs/{node.node_id}/attempt-1.log")
            text = mlflow.artifacts.load_text(
                f"runs:/{info.run_id}/logs/{node.node_id}/attempt-1.log"
            )
            texts = text.splitlines()
            assert len(texts) == len(page.lines)
            assert all(a.endswith(f" {b.text}") for a, b in zip(texts, page.lines, strict=True))
    assert attached == with_lines
    assert "logs/train/attempt-1.log" in attached  # XGBoost's C++ logger at verbosity 2


def test_failed_run_mirrored_and_tracking_switched_off(
    tracked: tuple[ControlPlane, Api],
) -> None:
    from mlflow import MlflowClient

    plane, api = tracked
    failing = {"nodes": [{"id": "load", "type": "data_loader", "params": {"path": "none.csv"}}]}
    register(api, "broken", json_format.ParseDict(failing, pipeline_spec_pb2.PipelineSpec()))
    register(api, "quiet", _noop_spec(disabled=True))
    failed = wait(api, start(api, "broken").name)
    assert failed.state == RunState.STATE_FAILED
    quiet = wait(api, start(api, "quiet").name)
    assert quiet.state == RunState.STATE_SUCCEEDED

    info = until(_recorded(api, failed.name), 60, "the failed run in MLflow").tracking
    client = MlflowClient(info.tracking_uri)
    mlrun = until(_terminated(client, info.run_id), 60, "the MLflow run's final status")
    assert mlrun.info.status == "FAILED"
    shown = _cli(plane, "runs", "get", failed.name)
    assert re.search(rf"mlflow run\s+{info.run_id}\n", shown)
    assert re.search(rf"mlflow url\s+runs:/{info.run_id}\n", shown)
    assert plane.supervisor is not None
    assert plane.supervisor.tracker.flush(30)  # type: ignore[attr-defined]
    assert not api.runs.GetRun(rpb.GetRunRequest(name=quiet.name)).run.HasField("tracking")
    assert client.get_experiment_by_name("quiet") is None


def _cli(plane: ControlPlane, *args: str) -> str:
    """What ``raypipe`` prints for ``args`` against ``plane`` (wide, so rows stay whole)."""
    from click.testing import CliRunner

    from raypipe.cli import main

    result = CliRunner().invoke(
        main, ["--address", f"127.0.0.1:{plane.port}", *args], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_tracking_server_does_not_fail_the_run(tmp_path: Path, ray_head: Any) -> None:
    from mlflow import MlflowClient

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    plane = _plane(tmp_path, ray_head, uri)
    plane.start()
    api = Api.connect(f"127.0.0.1:{plane.port}")
    server: subprocess.Popen[bytes] | None = None
    try:
        register(api, "offline", _noop_spec())
        run = wait(api, start(api, "offline").name)
        assert run.state == RunState.STATE_SUCCEEDED  # the store is down: the run is not
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        server = subprocess.Popen(
            [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "server-artifacts")],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the workers stop with it
        )  # fmt: skip
        info = until(_recorded(api, run.name), 150, "the run in MLflow once it is up").tracking
        assert info.url == f"{uri}/#/experiments/{info.experiment_id}/runs/{info.run_id}"
        client = MlflowClient(uri)
        mlrun = until(_terminated(client, info.run_id), 60, "the MLflow run's final status")
        assert mlrun.info.status == "FINISHED"
        assert mlrun.data.tags["raypipe.run"] == run.name
        assert not api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run.tracking.problem
    finally:
        api.channel.close()
        plane.stop(grace=1)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def test_scores_of_an_evaluator_ending_after_its_model_is_logged_are_linked_once(
    tmp_path: Path, ray_head: Any
) -> None:
    """The other order than the pipeline above: the saver's model is logged (a real Ray task)
    before the evaluator of the same trainer ends; its scores still reach the logged model,
    written once with the model's id."""
    from mlflow import MlflowClient
    from sklearn.model_selection import train_test_split

    from control_plane.tracking import MlflowTracker
    from ray_nodes.data import Split, output_of
    from ray_nodes.engine import ArtifactRef, EngineEvent
    from ray_nodes.node import NodeContext
    from ray_nodes.nodes.model_saver import ModelSaverNode
    from ray_nodes.nodes.model_trainer import ModelTrainerNode

    frame = load_breast_cancer(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(frame.data, frame.target, random_state=0)
    split = Split(X_train, X_test, y_train, y_test, "target", "classification")
    params = {"backend": "xgboost", "task": "classification", "random_state": 0}
    ctx = NodeContext("r1", "runs/r1", "p", "train", 1, params, 1.0)
    model = output_of(ModelTrainerNode().run(ctx, [split]))
    save_ctx = NodeContext(
        "r1", "runs/r1", "p", "save", 1, {"path": "m"}, 1.0, artifact_root=str(tmp_path)
    )
    saved = ModelSaverNode().run(save_ctx, [model])
    artifacts = tuple(ArtifactRef(**a) for a in saved.artifacts)
    spec = json_format.ParseDict(
        {"nodes": [
            {"id": "load", "type": "data_loader", "params": {"path": "cancer.csv"}},
            {"id": "split", "type": "train_test_split", "depends_on": ["load"],
             "params": {"target": "target"}},
            {"id": "train", "type": "model_trainer", "depends_on": ["split"], "params": params},
            {"id": "save", "type": "model_saver", "depends_on": ["train"]},
            {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "split"]},
        ]},
        pipeline_spec_pb2.PipelineSpec(),
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, artifact_dir=str(tmp_path / "mlruns"), retry_for=30)
    stored: dict[str, run_pb2.TrackingInfo] = {}
    tracker.start(lambda run_id, info: stored.__setitem__(run_id, info))
    try:
        run = run_pb2.Run(name="runs/r1", pipeline="pipelines/p")
        tracker.run_started(run, spec)
        tracker.events(run, [EngineEvent(1, time.time(), "node", "save", "SUCCEEDED",
                                         artifacts=artifacts)])  # fmt: skip

        def model_logged() -> run_pb2.TrackingInfo | None:
            found = stored.get("r1")
            return found if found is not None and found.models else None

        info = until(model_logged, 120, "the model")
        model_id = info.models[0].model_id
        scores = {"accuracy": 0.93, "f1": 0.91}
        tracker.events(run, [EngineEvent(2, time.time(), "node", "evaluate", "SUCCEEDED",
                                         metrics=scores)])  # fmt: skip
        tracker.run_finished(run_pb2.Run(name="runs/r1", state=RunState.STATE_SUCCEEDED))
        assert tracker.flush(60)
        assert not stored["r1"].problem, stored["r1"].problem
        client = MlflowClient(uri)
        linked = {m.key: m.value for m in client.get_logged_model(model_id).metrics or ()}
        assert linked["evaluate.accuracy"] == 0.93
        assert linked["evaluate.f1"] == 0.91
        history = client.get_metric_history(info.run_id, "evaluate.accuracy")
        assert [h.value for h in history] == [0.93]  # one write, with the model's id
        assert client.get_run(info.run_id).info.status == "FINISHED"
    finally:
        tracker.close(timeout=5)


def test_a_refused_scheduled_fire_is_recorded_like_every_run(
    tracked: tuple[ControlPlane, Api],
) -> None:
    """A fire whose version lacks the schedule's parameters never reaches Ray, yet goes the
    way every run's end goes: WatchRun shows it FAILED with why, and MLflow mirrors it."""
    from mlflow import MlflowClient

    from raypipe.v1 import pipeline_pb2, schedule_pb2, schedule_service_pb2_grpc
    from raypipe.v1 import pipeline_service_pb2 as ppb
    from raypipe.v1 import schedule_service_pb2 as spb

    _, api = tracked
    with_x = json_format.ParseDict(
        {"nodes": [{"id": "a", "type": "noop"}], "parameters": {"x": 1}},
        pipeline_spec_pb2.PipelineSpec(),
    )
    register(api, "sched", with_x)
    schedules = schedule_service_pb2_grpc.ScheduleServiceStub(api.channel)
    config = schedule_pb2.Schedule(
        pipeline="pipelines/sched", parameters={"x": struct_pb2.Value(number_value=2)}
    )
    config.cron.expression = "0 0 1 1 *"
    schedules.CreateSchedule(spb.CreateScheduleRequest(schedule=config, schedule_id="yearly"))
    # The default version moves to one that declares no "x".
    api.pipelines.CreatePipelineVersion(
        ppb.CreatePipelineVersionRequest(
            parent="pipelines/sched",
            pipeline_version=pipeline_pb2.PipelineVersion(spec=_noop_spec()),
        )
    )
    run = schedules.TriggerSchedule(spb.TriggerScheduleRequest(name="schedules/yearly")).run
    final = wait(api, run.name)
    assert final.state == RunState.STATE_FAILED
    assert "declares no parameter 'x'" in final.error.message
    assert final.schedule == "schedules/yearly"

    info = until(_recorded(api, run.name), 60, "the refused run in MLflow").tracking
    mlrun = until(_terminated(MlflowClient(info.tracking_uri), info.run_id), 60, "its status")
    assert mlrun.info.status == "FAILED"
    assert mlrun.data.tags["raypipe.schedule"] == "schedules/yearly"
