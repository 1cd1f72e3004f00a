"""A pipeline with a ``lightning`` trainer through the real control plane and Ray: the node
asks for a GPU with ``gpu_policy: GPU_POLICY_PREFERRED``, so on this GPU-less cluster it
trains on CPU and says so; its epochs stream as WatchRun progress events and end up in its
metrics; the saved model reloads and predicts as the evaluator measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from ray_nodes.nodes.model_saver import load_model
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from raypipe.v1 import run_service_pb2 as rpb
from tests.integration.conftest import Api
from tests.integration.test_runs import register, start

NodeState = run_pb2.NodeExecution.State
MAX_EPOCHS = 8


def _spec() -> pipeline_spec_pb2.PipelineSpec:
    hyperparameters = {"hidden_layer_sizes": [32, 16], "max_epochs": MAX_EPOCHS, "patience": 3}
    nodes: list[dict[str, Any]] = [
        {"id": "load", "type": "data_loader", "params": {"path": "cancer.csv"}},
        {"id": "split", "type": "train_test_split", "depends_on": ["load"],
         "params": {"target": "target", "test_size": 0.25, "random_state": 0, "stratify": True}},
        {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
        {"id": "train", "type": "model_trainer", "depends_on": ["scale"],
         "resources": {"num_cpus": 1, "num_gpus": 1, "gpu_policy": "GPU_POLICY_PREFERRED"},
         "params": {"backend": "lightning", "task": "classification", "random_state": 0,
                    "hyperparameters": hyperparameters}},
        {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "scale"]},
        {"id": "save", "type": "model_saver", "depends_on": ["train"],
         "params": {"path": "models/cancer-lightning"}},
    ]  # fmt: skip
    return json_format.ParseDict({"nodes": nodes}, pipeline_spec_pb2.PipelineSpec())


def test_lightning_trainer_on_cpu_with_progress(run_api: Api, tmp_path: Path) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(tmp_path / "cancer.csv", index=False)  # tmp_path is the server's data root
    register(run_api, "cancer-lightning", _spec())
    run = start(run_api, "cancer-lightning")
    stream = list(run_api.runs.WatchRun(rpb.WatchRunRequest(name=run.name), timeout=240))
    final = stream[-1].run
    assert final.state == run_pb2.Run.State.STATE_SUCCEEDED, final.error.message
    nodes = {n.node_id: n for n in final.nodes}
    train = nodes["train"]
    assert train.state == NodeState.STATE_SUCCEEDED
    assert any("ran on CPU" in note and "GPU_POLICY_PREFERRED" in note for note in train.notes)

    # WatchRun carried one progress event per epoch, in order, with the losses.
    progress = [
        r.event
        for r in stream
        if r.event.type == run_pb2.RunEvent.TYPE_NODE_PROGRESS and r.event.node_id == "train"
    ]
    epochs = [int(e.metrics["epoch"]) for e in progress]
    assert epochs == list(range(1, len(epochs) + 1))
    assert 1 <= len(epochs) <= MAX_EPOCHS
    assert all({"train_loss", "val_loss"} <= set(e.metrics) for e in progress)
    assert progress[0].message.startswith(f"epoch 1/{MAX_EPOCHS}: train_loss ")

    # The node's metrics sum the training up: epochs, the kept epoch and its losses, no GPU.
    metrics = dict(train.metrics)
    assert metrics["epochs"] == len(epochs)
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"]
    best = progress[int(metrics["best_epoch"]) - 1].metrics
    assert metrics["val_loss"] == best["val_loss"]
    assert metrics["train_loss"] == best["train_loss"]
    assert metrics["last_train_loss"] == progress[-1].metrics["train_loss"]
    assert metrics["cuda"] == 0.0
    accuracy = nodes["evaluate"].metrics["accuracy"]
    assert accuracy >= 0.9

    # The saved model reloads (tensors only) and predicts what the evaluator measured.
    model_ref = next(a for a in nodes["save"].artifacts if a.name == "model")
    assert model_ref.uri.endswith("models/cancer-lightning/model.pt")
    saved = load_model(Path(model_ref.uri).parent)
    assert saved.estimator.device_ == "cpu"
    # the split node's test quarter: the same call on the same data
    X, y = frame.drop(columns=["target"]), frame["target"]
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    assert saved.scaler is not None
    assert accuracy_score(y_test, saved.predict(saved.scaler.transform(X_test))) == accuracy
