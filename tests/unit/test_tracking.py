"""Tracking without Ray: what a run amounts to in MLflow (params, tags, metrics, model jobs),
the tracker's retry against a real MLflow store that becomes available, the problem written
on the run when retries run out, and the spec's tracking policy checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from control_plane.pipelines.validation import spec_violations
from control_plane.tracking import MlflowTracker, NullTracker, open_tracker
from control_plane.tracking.records import (
    MAX_PARAM_VALUE,
    experiment_name,
    metrics_of,
    mlflow_status,
    model_jobs,
    run_params,
    run_tags,
    run_url,
)
from ray_nodes.engine import ArtifactRef, EngineEvent
from ray_nodes.registry import default_registry
from raypipe.v1 import node_type_pb2, pipeline_spec_pb2, run_pb2

RunState = run_pb2.Run.State


def _spec(**extra: Any) -> pipeline_spec_pb2.PipelineSpec:
    nodes: list[dict[str, Any]] = [
        {"id": "split", "type": "train_test_split", "params": {"target": "y"}},
        {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
        {"id": "train", "type": "model_trainer", "depends_on": ["scale"],
         "params": {"backend": "xgboost", "task": "classification",
                    "hyperparameters": {"max_depth": "{{ parameters.depth }}",
                                        "tree": {"method": "hist"}, "layers": [4, 2]}}},
        {"id": "save", "type": "model_saver", "depends_on": ["train"],
         "params": {"register_as": "{{ parameters.model }}"}},
    ]  # fmt: skip
    spec = {"nodes": nodes, "parameters": {"depth": 3, "model": "churn"}, **extra}
    return json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())


def _run(**extra: Any) -> run_pb2.Run:
    run = run_pb2.Run(
        name="runs/r1",
        pipeline="pipelines/churn",
        pipeline_version="pipelines/churn/versions/2",
        display_name="churn-r1",
        **extra,
    )
    run.create_time.GetCurrentTime()
    return run


def test_params_flatten_nodes_with_templates_resolved() -> None:
    run = _run(parameters={"depth": struct_pb2.Value(number_value=5)})
    params = run_params(run, _spec())
    assert params["parameters.depth"] == "5"  # the run's value over the spec's default
    assert params["parameters.model"] == "churn"
    assert params["train.type"] == "model_trainer"
    assert params["train.hyperparameters.max_depth"] == "5"
    assert params["train.hyperparameters.tree.method"] == "hist"
    assert params["train.hyperparameters.layers"] == "[4, 2]"
    assert params["save.register_as"] == "churn"
    assert params["scale.type"] == "feature_scaler"


def test_long_param_values_are_cut_to_mlflow_limit() -> None:
    spec = json_format.ParseDict(
        {"nodes": [{"id": "a", "type": "noop", "params": {"note": "x" * 10_000}}]},
        pipeline_spec_pb2.PipelineSpec(),
    )
    value = run_params(_run(), spec)["a.note"]
    assert len(value) == MAX_PARAM_VALUE
    assert value.endswith("...")


def test_tags_status_url_and_experiment() -> None:
    run = _run(schedule="schedules/nightly", labels={"team": "ml"})
    run.scheduled_time.FromJsonString("2026-11-27T02:00:00Z")
    tags = run_tags(run)
    assert tags["raypipe.run"] == "runs/r1"
    assert tags["raypipe.pipeline_version"] == "pipelines/churn/versions/2"
    assert tags["raypipe.schedule"] == "schedules/nightly"
    assert tags["raypipe.scheduled_time"] == "2026-11-27T02:00:00Z"
    assert tags["raypipe.label.team"] == "ml"
    assert "raypipe.schedule" not in run_tags(_run())
    run.creator = "system:scheduler"
    assert run_tags(run)["raypipe.creator"] == "system:scheduler"
    assert "raypipe.creator" not in run_tags(_run())
    assert mlflow_status(RunState.STATE_SUCCEEDED) == "FINISHED"
    assert mlflow_status(RunState.STATE_FAILED) == "FAILED"
    assert mlflow_status(RunState.STATE_CANCELLED) == "KILLED"
    assert (
        run_url("http://mlflow:5000/", "7", "abc") == "http://mlflow:5000/#/experiments/7/runs/abc"
    )
    assert run_url("sqlite:///x.db", "7", "abc") == "runs:/abc"
    assert experiment_name(_run(), _spec()) == "churn"
    assert experiment_name(_run(), _spec(tracking={"experiment": "team/churn"})) == "team/churn"


def test_metrics_curves_have_steps_final_values_step_zero() -> None:
    events = [
        EngineEvent(1, 10.0, "progress", "train", metrics={"epoch": 1, "loss": 0.9}),
        EngineEvent(2, 11.0, "progress", "train", metrics={"epoch": 2, "loss": 0.5}),
        EngineEvent(3, 12.0, "progress", "net", metrics={"loss": 0.7}),
        EngineEvent(
            4, 13.0, "node", "train", "SUCCEEDED", metrics={"loss": 0.5, "bad": float("nan")}
        ),
        EngineEvent(5, 14.0, "run", state="SUCCEEDED"),
    ]
    steps: dict[tuple[str, str], int] = {}
    got = [(m.key, m.value, m.step) for m in metrics_of(events, steps)]
    assert got == [
        ("train.progress.loss", 0.9, 1),
        ("train.progress.loss", 0.5, 2),
        ("net.progress.loss", 0.7, 0),
        ("train.loss", 0.5, 0),
    ]
    more = metrics_of([EngineEvent(6, 15.0, "progress", "net", metrics={"loss": 0.6})], steps)
    assert [(m.key, m.step) for m in more] == [("net.progress.loss", 1)]  # counted across batches
    odd = metrics_of([EngineEvent(7, 1.0, "node", "n", "SUCCEEDED", metrics={"a:b": 1.0})])
    assert odd[0].key == "n.a_b"


def test_model_jobs_take_the_nearest_upstream_split() -> None:
    split = run_pb2.Artifact(
        name="output", kind=node_type_pb2.ARTIFACT_KIND_SPLIT, uri="/a/scale.pkl", sha256="00"
    )
    split.metadata.update({"format": "cloudpickle"})
    run = _run(
        nodes=[
            run_pb2.NodeExecution(node_id="split"),
            run_pb2.NodeExecution(node_id="scale", artifacts=[split]),
        ]
    )
    model = ArtifactRef("model", "model", "/a/models/m/model.json", 10, "00")
    saved = EngineEvent(1, 1.0, "node", "save", "SUCCEEDED", artifacts=(model,))
    failed = EngineEvent(2, 1.0, "node", "train", "FAILED")
    jobs = model_jobs(run, _spec(), [saved, failed])
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.node_id, job.model_dir, job.register_as) == ("save", "/a/models/m", "churn")
    assert job.example is not None
    assert job.example.uri == "/a/scale.pkl"


def test_open_tracker_off_and_on(tmp_path: Path) -> None:
    assert isinstance(open_tracker("", tmp_path), NullTracker)
    tracker = open_tracker(f"sqlite:///{tmp_path / 'm.db'}", tmp_path)
    assert isinstance(tracker, MlflowTracker)


class _Stored:
    """The store callback: what the tracker saved on each run, as the supervisor would."""

    def __init__(self) -> None:
        self.infos: list[run_pb2.TrackingInfo] = []
        self.lock = threading.Lock()

    def __call__(self, run_id: str, info: run_pb2.TrackingInfo) -> None:
        with self.lock:
            self.infos.append(info)

    def last(self) -> run_pb2.TrackingInfo | None:
        with self.lock:
            return self.infos[-1] if self.infos else None


def _until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_store_unavailable_at_first_is_retried_until_it_works(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    store_dir = tmp_path / "later"
    store_dir.write_text("a file where the store's directory goes: the store cannot open")
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    tracker = MlflowTracker(uri, artifact_dir=str(tmp_path / "mlruns"), retry_for=120)
    stored = _Stored()
    tracker.start(stored)
    try:
        spec = _spec()
        run = _run()
        tracker.run_started(run, spec)
        events = [EngineEvent(1, time.time(), "node", "train", "SUCCEEDED", metrics={"f1": 0.8})]
        tracker.events(run, events)
        finished = _run(state=RunState.STATE_FAILED)
        finished.end_time.GetCurrentTime()
        tracker.run_finished(finished)
        time.sleep(0.5)  # a few attempts fail meanwhile
        assert stored.last() is None
        store_dir.unlink()
        store_dir.mkdir()
        info = _until(lambda: (i := stored.last()) and i.run_id and i, 60)
        assert tracker.flush(60)
        assert not info.problem
        found = MlflowClient(uri).get_run(info.run_id)
        assert found.data.metrics["train.f1"] == 0.8
        assert found.data.params["train.hyperparameters.max_depth"] == "3"
        assert found.info.status == "FAILED"
        assert found.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())
    finally:
        tracker.close(timeout=1)


def test_retries_exhausted_write_the_problem_on_the_run(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the store's directory goes")
    uri = f"sqlite:///{tmp_path / 'blocked' / 'mlflow.db'}"
    tracker = MlflowTracker(uri, retry_for=0.5)
    stored = _Stored()
    tracker.start(stored)
    try:
        run = _run()
        tracker.run_started(run, _spec())
        tracker.events(run, [EngineEvent(1, 1.0, "node", "train", "SUCCEEDED", metrics={"a": 1})])
        tracker.run_finished(_run(state=RunState.STATE_SUCCEEDED))
        assert tracker.flush(30)
        info = stored.last()
        assert info is not None
        assert not info.run_id
        assert info.problem.startswith("the MLflow run not recorded in MLflow: ")
        assert info.tracking_uri == uri
    finally:
        tracker.close(timeout=1)


def test_disabled_pipeline_records_nothing(tmp_path: Path) -> None:
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'm.db'}")
    stored = _Stored()
    tracker.start(stored)
    try:
        tracker.run_started(_run(), _spec(tracking={"disabled": True}))
        tracker.run_finished(_run(state=RunState.STATE_SUCCEEDED))
        assert tracker.flush(5)
        assert stored.last() is None
        assert not (tmp_path / "m.db").exists()
    finally:
        tracker.close(timeout=1)


@pytest.mark.parametrize(
    ("tracking", "problem"),
    [
        ({"experiment": " churn"}, "must not start or end with whitespace"),
        ({"experiment": "x" * 257}, "at most 256"),
        ({"experiment": "churn", "disabled": True}, "while tracking.disabled is true"),
    ],
)
def test_tracking_policy_checks(tracking: dict[str, Any], problem: str) -> None:
    spec = json_format.ParseDict(
        {"nodes": [{"id": "a", "type": "noop"}], "tracking": tracking},
        pipeline_spec_pb2.PipelineSpec(),
    )
    violations, _, _ = spec_violations(spec, default_registry())
    assert [(v.field, problem in v.description) for v in violations] == [
        ("spec.tracking.experiment", True)
    ]


def test_valid_tracking_policies_pass() -> None:
    for tracking in ({}, {"disabled": True}, {"experiment": "team/churn"}):
        spec = json_format.ParseDict(
            {"nodes": [{"id": "a", "type": "noop"}], "tracking": tracking},
            pipeline_spec_pb2.PipelineSpec(),
        )
        assert spec_violations(spec, default_registry())[0] == []


def test_params_are_what_the_engine_gives_the_node() -> None:
    """MLflow's params come from the engine's own resolver: ``{{ run.name }}`` is the display
    name, else the bare run id (as the node gets it, not ``runs/{id}``); ``{{
    run.scheduled_time }}`` the nominal time; ``input_from`` is wiring, not a param."""
    from ray_nodes.params import node_params, run_parameters

    spec = json_format.ParseDict(
        {
            "nodes": [
                {"id": "a", "type": "noop"},
                {
                    "id": "save",
                    "type": "model_saver",
                    "depends_on": ["a"],
                    "params": {
                        "path": "{{ run.name }}",
                        "format": "{{ run.scheduled_time }}",
                        "input_from": {"model": "a"},
                    },
                },
            ]
        },
        pipeline_spec_pb2.PipelineSpec(),
    )
    run = run_pb2.Run(name="runs/r7", pipeline="pipelines/p")
    run.scheduled_time.FromJsonString("2026-12-03T06:00:00Z")
    params = run_params(run, spec)
    assert params["save.path"] == "r7"
    assert params["save.format"] == "2026-12-03T06:00:00Z"
    assert not [k for k in params if "input_from" in k]
    received = node_params(
        spec.nodes[1],
        parameters=run_parameters(spec, {}),
        run_name="r7",
        scheduled_time="2026-12-03T06:00:00Z",
    )
    assert (params["save.path"], params["save.format"]) == (received["path"], received["format"])
    assert "input_from" not in received
    named = run_pb2.Run(name="runs/r7", display_name="nightly-7", pipeline="pipelines/p")
    assert run_params(named, spec)["save.path"] == "nightly-7"
