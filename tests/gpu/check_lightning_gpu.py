"""Check that a ``lightning`` model_trainer node with ``num_gpus: 1`` trains on the GPU Ray
assigned. Run by hand on a machine with a GPU (see README.md); not collected by pytest.

It starts a local Ray with the GPUs torch detects, runs load -> split -> scale -> train
(``model_trainer``, backend ``lightning``, ``resources.num_gpus: 1``) -> evaluate -> save
and prints, from inside the training task, ``torch.cuda.is_available()``, the device name,
``CUDA_VISIBLE_DEVICES``, ``ray.get_gpu_ids()`` and the device the network's parameters
trained on (the estimator records them in ``device_info_``), then the test accuracy.

Two ways to run the graph (``--mode``):

* ``engine``: the real run engine of ``ray_nodes.engine`` (its supervisor actor, the
  compiler that places nodes, each node's task), without the gRPC control plane. It needs
  the generated protobuf code (``make proto``: ``clients/python/raypipe/v1``).
* ``tasks``: each node's class run as a Ray task, the trainer's with ``num_gpus=1``, given
  the GPU ids Ray assigned as the engine's task does. Needs only ray_nodes' own imports.
* ``auto`` (default): ``engine`` when the protobuf code imports, else ``tasks``.

Exit status 0 only when training used CUDA; 1 when it ran on CPU (or no GPU was found);
2 when the run failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "clients" / "python"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

HYPERPARAMETERS = {"hidden_layer_sizes": [128, 64], "max_epochs": 30, "batch_size": 64}
GPU_POLICY = "GPU_POLICY_PREFERRED"  # on a GPU-less machine: train on CPU, then fail below


def _nodes(data: str) -> list[dict[str, Any]]:
    return [
        {"id": "load", "type": "data_loader", "params": {"path": data}},
        {"id": "split", "type": "train_test_split", "depends_on": ["load"],
         "params": {"target": "target", "test_size": 0.25, "random_state": 0, "stratify": True}},
        {"id": "scale", "type": "feature_scaler", "depends_on": ["split"]},
        {"id": "train", "type": "model_trainer", "depends_on": ["scale"],
         "resources": {"num_cpus": 1, "num_gpus": 1, "gpu_policy": GPU_POLICY},
         "params": {"backend": "lightning", "task": "classification", "random_state": 0,
                    "hyperparameters": HYPERPARAMETERS}},
        {"id": "evaluate", "type": "model_evaluator", "depends_on": ["train", "scale"]},
        {"id": "save", "type": "model_saver", "depends_on": ["train"],
         "params": {"path": "models/gpu-check"}},
    ]  # fmt: skip


# -- the engine ---------------------------------------------------------------------------------


def run_engine(work: Path, nodes_spec: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Drive the graph (``nodes_spec``, default this check's) through ray_nodes.engine on the
    Ray this process is connected to; returns what the check prints, with ``placement``: the
    Ray node each pipeline node's last attempt ran on."""
    from google.protobuf import json_format

    from ray_nodes.engine import RayEngine, RunSubmission
    from ray_nodes.nodes.model_saver import load_model
    from raypipe.v1 import pipeline_spec_pb2

    spec = json_format.ParseDict(
        {"nodes": nodes_spec or _nodes("cancer.csv")}, pipeline_spec_pb2.PipelineSpec()
    )
    run_id = uuid.uuid4().hex[:12]
    engine = RayEngine(ray.get_runtime_context().gcs_address, namespace="gpu-check")
    engine.start()
    engine.submit(
        RunSubmission(
            run_id=run_id,
            run_name=f"runs/{run_id}",
            pipeline_id="gpu-check",
            spec=spec.SerializeToString(),
            parameters={},
            artifact_root=str(work / "artifacts"),
            data_roots=(str(work),),
        )
    )
    cursor, state, nodes, progress = 0, "", {}, []
    placement: dict[str, str] = {}
    deadline = time.monotonic() + 600
    while state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not end within 10 minutes")
        for event in engine.poll({run_id: cursor}, 5.0).events.get(run_id, []):
            cursor = max(cursor, event.seq)
            if event.kind == "run":
                state = event.state
                if event.error is not None:
                    print(f"run error: {event.error}")
            elif event.kind == "progress" and event.node_id == "train":
                progress.append(event.message)
            elif event.kind == "node":
                nodes[event.node_id] = event
                if event.ray_node_id:
                    placement[event.node_id] = event.ray_node_id
                if event.state == "FAILED":
                    print(f"node {event.node_id} failed: {event.error}")
        engine.ack(run_id, cursor)
    engine.close()
    if state != "SUCCEEDED":
        return {"state": state, "placement": placement}
    saved = load_model(work / "artifacts" / "models" / "gpu-check")
    return {
        "state": state,
        "info": saved.estimator.device_info_,
        "device": saved.estimator.device_,
        "notes": list(nodes["train"].notes),
        "train_metrics": dict(nodes["train"].metrics),
        "accuracy": nodes["evaluate"].metrics.get("accuracy"),
        "progress": progress,
        "placement": placement,
    }


# -- node tasks ---------------------------------------------------------------------------------


def _engine_types_only() -> None:
    """Let ray_nodes' node code import ``ray_nodes.engine.types`` where the engine is missing
    its dependencies.

    Every built-in node returns a ``ray_nodes.engine.types.NodeResult``; importing it runs
    ``ray_nodes/engine/__init__.py``, which imports the whole engine and through it the
    generated protobuf code and the SDK's gRPC modules. Where those do not import, the
    package is registered without its ``__init__``, so that only ``types.py`` (plain
    dataclasses) is loaded.
    """
    try:
        import ray_nodes.engine  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m.startswith("ray_nodes.engine.")]:
            del sys.modules[name]
        package = types.ModuleType("ray_nodes.engine")
        package.__path__ = [str(ROOT / "ray_nodes" / "engine")]
        sys.modules["ray_nodes.engine"] = package


def _run_node(type_name: str, node_id: str, params: dict[str, Any], root: str, inputs: Any) -> Any:
    _engine_types_only()
    from ray_nodes.node import NodeContext
    from ray_nodes.registry import default_registry

    ctx = NodeContext(
        run_id="gpu-check", run_name="runs/gpu-check", pipeline_id="gpu-check", node_id=node_id,
        attempt=1, params=params, num_cpus=1.0, gpu_ids=tuple(int(g) for g in ray.get_gpu_ids()),
        artifact_root=root, data_roots=(Path(root),),
        _report=lambda metrics, message: print(f"[{node_id}] {message}", flush=True),
    )  # fmt: skip
    result = default_registry().get(type_name)().run(ctx, list(inputs))
    output = getattr(result, "output", result)
    metrics = dict(getattr(result, "metrics", {}) or {})
    return output, metrics, list(ctx.notes)


@ray.remote(num_cpus=1, num_returns=1)
def _task(type_name: str, node_id: str, params: dict[str, Any], root: str, *inputs: Any) -> Any:
    return _run_node(type_name, node_id, params, root, inputs)


def run_tasks(work: Path, gpus: int) -> dict[str, Any]:
    """Each node as a Ray task; the trainer's asks for one GPU when the cluster has one."""
    outputs: dict[str, Any] = {}
    metrics: dict[str, dict[str, float]] = {}
    for node in _nodes("cancer.csv"):
        num_gpus = node.get("resources", {}).get("num_gpus", 0) if gpus else 0
        inputs = [outputs[d] for d in node.get("depends_on", [])]  # the kinds' order
        ref = _task.options(num_gpus=num_gpus, name=f"gpu-check/{node['id']}").remote(
            node["type"], node["id"], node.get("params", {}), str(work), *inputs
        )
        output, metrics[node["id"]], _ = ray.get(ref)
        outputs[node["id"]] = output
    model = outputs["train"]
    return {
        "state": "SUCCEEDED",
        "info": model.estimator.device_info_,
        "device": model.estimator.device_,
        "notes": [] if gpus else ["the cluster has no GPU: the trainer task asked for none"],
        "train_metrics": metrics["train"],
        "accuracy": metrics["evaluate"].get("accuracy"),
        "progress": [],
    }


# -- main ---------------------------------------------------------------------------------------


def _engine_importable() -> bool:
    try:
        import ray_nodes.engine  # noqa: F401
        from raypipe.v1 import pipeline_spec_pb2  # noqa: F401
    except Exception as e:  # a missing generated module or engine dependency
        print(f"engine mode unavailable ({e}); running the nodes as Ray tasks")
        return False
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("auto", "engine", "tasks"), default="auto")
    args = parser.parse_args(argv)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"driver: torch {torch.__version__} (CUDA build {torch.version.cuda}), "
          f"torch.cuda.is_available()={torch.cuda.is_available()}, GPUs detected: {gpus}")  # fmt: skip
    if gpus:
        print(f"driver: GPU 0 is {torch.cuda.get_device_name(0)}")
    mode = args.mode
    if mode == "auto":
        mode = "engine" if _engine_importable() else "tasks"
    with tempfile.TemporaryDirectory(prefix="raypipe-gpu-check-") as tmp:
        work = Path(tmp)
        load_breast_cancer(as_frame=True).frame.to_csv(work / "cancer.csv", index=False)
        # Ray's workers inherit the environment: let them import ray_nodes from any cwd.
        paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        ray.init(num_gpus=gpus, num_cpus=min(4, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=True, configure_logging=False)  # fmt: skip
        print(f"ray {ray.__version__}: cluster resources {ray.cluster_resources()}; mode {mode}")
        try:
            result = run_engine(work) if mode == "engine" else run_tasks(work, gpus)
        finally:
            ray.shutdown()
    if result["state"] != "SUCCEEDED":
        print(f"FAIL: the run ended {result['state']}")
        return 2
    info = result["info"]
    print("inside the training task:")
    print(f"  torch.cuda.is_available() = {info.get('torch_cuda_available')}")
    print(f"  device name               = {info.get('device_name', '(none: CPU)')}")
    print(f"  CUDA_VISIBLE_DEVICES      = {info.get('cuda_visible_devices')}")
    print(f"  ray.get_gpu_ids()         = {info.get('ray_gpu_ids')}")
    print(f"  placement                 = {info.get('reason')}")
    print(f"  parameters trained on     = {result['device']}")
    for note in result["notes"]:
        print(f"  note: {note}")
    for line in result["progress"][:3] + (["..."] if len(result["progress"]) > 3 else []):
        print(f"  progress: {line}")
    metrics = result["train_metrics"]
    print(f"train metrics: epochs {metrics.get('epochs')}, best_epoch {metrics.get('best_epoch')}, "
          f"val_loss {metrics.get('val_loss')}, cuda {metrics.get('cuda')}, "
          f"train_seconds {metrics.get('train_seconds')}")  # fmt: skip
    accuracy = result["accuracy"]
    print(f"test accuracy: {accuracy}")
    used_cuda = str(result["device"]).startswith("cuda") and bool(info.get("ray_gpu_ids"))
    if not used_cuda:
        why = "no GPU detected" if not gpus else "Ray's GPU was not used"
        print(f"FAIL: no GPU was used: training ran on {result['device']} ({why})")
        return 1
    if accuracy is None or not np.isfinite(accuracy) or accuracy < 0.9:
        print(f"FAIL: trained on {result['device']} but test accuracy is {accuracy}")
        return 2
    print(f"OK: trained on {result['device']} ({info.get('device_name')}) with the GPU Ray "
          f"assigned (ids {info.get('ray_gpu_ids')}, CUDA_VISIBLE_DEVICES="
          f"{info.get('cuda_visible_devices')})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
