"""Check, on a machine with a GPU, that on a Ray cluster of two raylets a ``lightning`` trainer
with ``num_gpus: 1`` runs on the raylet that has the GPU, and trains on it, while the CPU
nodes run wherever there is room. Run by hand (see README.md); not collected by pytest.

It starts a head with `ray start --head --num-gpus 0` (CPUs only) and a worker with
`ray start --address ... --num-gpus N` (the GPUs torch detects, and a custom resource), each
with ``--block`` in an OS session of its own so that only they are stopped at the end (no
`ray stop`); connects as a driver; runs load -> preprocess (8 partitions) -> split -> scale ->
train -> evaluate -> save through ray_nodes.engine (as check_lightning_gpu.py's ``engine``
mode: it needs the generated protobuf code, ``make proto``); and prints the Ray node every
pipeline node ran on and, from inside the training task, the device it trained on.

Exit status 0 only when the trainer ran on the GPU worker and trained on CUDA with the GPU Ray
assigned; 1 when it did not; 2 when the cluster or the run failed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_lightning_gpu as single
import numpy as np
import ray
import torch
from sklearn.datasets import load_breast_cancer

from ray_nodes.cluster import (  # check_lightning_gpu put the repository on the path
    _free_ports,
    _stop_session,
    configure_token_auth,
)

RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]


def _nodes(data: str) -> list[dict[str, Any]]:
    nodes = single._nodes(data)
    clean = {"id": "clean", "type": "data_preprocessor", "depends_on": ["load"],
             "params": {"drop_duplicates": True, "fill_missing": "median", "partitions": 8}}  # fmt: skip
    nodes[1]["depends_on"] = ["clean"]  # split reads the cleaned frame
    return [nodes[0], clean, *nodes[1:]]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*RAY, "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: stopping it stops only its processes
        )


def main() -> int:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"driver: torch {torch.__version__}, GPUs detected: {gpus}")
    with tempfile.TemporaryDirectory(prefix="raypipe-multinode-gpu-") as tmp:
        work = Path(tmp)
        load_breast_cancer(as_frame=True).frame.to_csv(work / "cancer.csv", index=False)
        root = str(Path(__file__).resolve().parents[2])
        paths = [root, str(Path(root) / "clients" / "python"), os.environ.get("PYTHONPATH", "")]
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        # Token authentication with a token of its own, for both raylets and this driver
        # (Ray would otherwise pick up whatever ~/.ray/auth_token holds).
        token = work / "ray-token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        configure_token_auth(token)
        (port,) = _free_ports(1)
        temp_dir = work / "ray"  # both raylets': how their processes are told from others
        common = ["--object-store-memory", str(2 * 1024**3), f"--temp-dir={temp_dir}"]
        head = _start(
            ["--head", f"--port={port}", "--num-cpus=4", "--num-gpus=0",
             "--include-dashboard=false", *common],
            work / "head.log",
        )  # fmt: skip
        worker: subprocess.Popen[bytes] | None = None
        try:
            address = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    ray.init(address=address, log_to_driver=True, configure_logging=False)
                    break
                except Exception:
                    if head.poll() is not None or time.monotonic() > deadline:
                        print((work / "head.log").read_text()[-3000:])
                        print("FAIL: the head did not start")
                        return 2
                    time.sleep(1)
            worker = _start(
                [f"--address={address}", "--num-cpus=4", f"--num-gpus={gpus}",
                 '--resources={"gpu_box": 1}', *common],
                work / "worker.log",
            )  # fmt: skip
            while len([n for n in ray.nodes() if n["Alive"]]) < 2:
                if worker.poll() is not None or time.monotonic() > deadline + 120:
                    print((work / "worker.log").read_text()[-3000:])
                    print("FAIL: the worker did not join")
                    return 2
                time.sleep(1)
            nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
            roles = {
                node_id: "GPU worker" if n["Resources"].get("gpu_box") else "head (CPUs only)"
                for node_id, n in nodes.items()
            }
            for node_id, n in nodes.items():
                resources = {k: v for k, v in n["Resources"].items() if "memory" not in k}
                print(f"raylet {node_id[:12]} {roles[node_id]}: {json.dumps(resources)}")
            result = single.run_engine(work, _nodes("cancer.csv"))
        finally:
            if ray.is_initialized():
                ray.shutdown()
            for proc in (worker, head):  # each in a session of its own
                if proc is not None:
                    _stop_session(proc.pid, temp_dir, grace_s=30)
                    proc.wait(timeout=30)
    print("where each node ran:")
    for node_id, ray_node in result.get("placement", {}).items():
        print(f"  {node_id:<9} {ray_node[:12]} ({roles.get(ray_node, '?')})")
    if result["state"] != "SUCCEEDED":
        print(f"FAIL: the run ended {result['state']}")
        return 2
    info, device = result["info"], str(result["device"])
    print(f"trainer: parameters trained on {device} ({info.get('device_name', 'CPU')}), "
          f"ray.get_gpu_ids() {info.get('ray_gpu_ids')}, "
          f"CUDA_VISIBLE_DEVICES {info.get('cuda_visible_devices')}")  # fmt: skip
    print(f"test accuracy: {result['accuracy']}")
    where = roles.get(result["placement"].get("train", ""), "?")
    if where != "GPU worker" or not device.startswith("cuda") or not info.get("ray_gpu_ids"):
        print(f"FAIL: the trainer ran on the {where} and trained on {device}")
        return 1
    accuracy = result["accuracy"]
    if accuracy is None or not np.isfinite(accuracy) or accuracy < 0.9:
        print(f"FAIL: test accuracy is {accuracy}")
        return 2
    print(f"OK: the trainer ran on the GPU worker and trained on {device}; the CPU nodes ran "
          f"on {sorted({roles.get(v, '?') for k, v in result['placement'].items() if k != 'train'})}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
