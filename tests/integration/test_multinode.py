"""raypipe on a Ray cluster of several raylets on this machine: `raypipe serve` starts its
head, and two workers join it with `ray start --address` (one declaring a logical GPU and a
custom resource, one with CPUs only). A node that asks for a GPU runs on the GPU worker; every
node records the Ray node it ran on.

Each worker runs `ray start --block` as a child process of the test in a session of its own,
so terminating it stops exactly that raylet and its processes; the server stops its head
(--stop-ray-on-exit). No `ray stop`, which would end every cluster on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import raypipe
from ray_nodes.cluster import find_local_head
from raypipe.v1 import run_pb2
from tests.integration.conftest import ServerProcess, ray_free_env

RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
#: A small object store per raylet: three of them share this machine's memory.
STORE_BYTES = 200 * 1024 * 1024


@dataclass
class Cluster:
    server: ServerProcess
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def join(self, name: str, log: Path, *args: str, attempts: int = 3) -> None:
        """Start a worker raylet joined to the server's head, and wait until Ray lists it.

        `ray start` gives a raylet 30 s (fixed in Ray) to register; on a loaded machine it may
        take longer, and the command then exits: it is started again, up to ``attempts``
        times. Workers join one at a time, which keeps the GCS's load down."""
        expected = len(self.nodes()) + 1
        tries = 0
        for _ in range(attempts):
            tries += 1
            with open(log, "ab") as out:
                worker = subprocess.Popen(
                    [
                        *RAY,
                        "start",
                        f"--address={self.env['RAY_ADDRESS']}",
                        "--block",
                        f"--object-store-memory={STORE_BYTES}",
                        "--disable-usage-stats",
                        *args,
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**ray_free_env(), **self.env},
                    start_new_session=True,
                )
            self.workers[name] = worker
            deadline = time.monotonic() + 180
            while worker.poll() is None and time.monotonic() < deadline:
                if len(self.nodes()) >= expected:
                    return
                time.sleep(1)
            if worker.poll() is None:
                break  # running but never listed: no retry will help
        tail = log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"worker {name} did not join after {tries} attempt(s):\n{tail}")

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's live nodes as Ray lists them (from a driver of its own)."""
        script = (
            "import json, ray; ray.init(log_to_driver=False); "
            "print(json.dumps([{'id': n['NodeID'], 'address': n['NodeManagerAddress'], "
            "'resources': n['Resources']} for n in ray.nodes() if n['Alive']]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**ray_free_env(), **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers.values():
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("multinode")
    server = ServerProcess(
        tmp / "data", "--stop-ray-on-exit", "--no-mlflow-tracking", "--no-http", own_ray=True
    )
    server.start(timeout=180)
    head = find_local_head(tmp / "data" / "ray")
    assert head is not None, "the server started no local head"
    built = Cluster(server, head.client_env())
    try:
        built.join(
            "gpu",
            tmp / "gpu-worker.log",
            "--num-cpus=1",
            "--num-gpus=1",
            '--resources={"gpu_box": 1}',
        )
        built.join("cpu", tmp / "cpu-worker.log", "--num-cpus=2", "--num-gpus=0")
        deadline = time.monotonic() + 120
        while len(built.nodes()) < 3:
            assert time.monotonic() < deadline, "the workers did not join"
            time.sleep(1)
        yield built
    finally:
        built.stop()
        if server.proc is not None and server.proc.poll() is None:
            server.terminate(timeout=120)


def test_a_gpu_node_runs_on_the_gpu_worker_and_every_node_records_its_ray_node(
    cluster: Cluster,
) -> None:
    nodes = cluster.nodes()
    gpu_nodes = [n["id"] for n in nodes if n["resources"].get("GPU")]
    assert len(nodes) == 3
    assert len(gpu_nodes) == 1
    spec: dict[str, Any] = {
        "nodes": [
            {"id": "start", "type": "noop"},
            {"id": "train", "type": "noop", "depends_on": ["start"], "resources": {"num_gpus": 1}},
            *(
                {
                    "id": f"prep{i}",
                    "type": "noop",
                    "depends_on": ["start"],
                    "params": {"sleep_seconds": 1},
                    "resources": {"num_cpus": 1},
                }
                for i in range(4)
            ),
        ]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="placed")
        run = client.wait_run(client.create_run("placed"), timeout=300)
    assert run.state == run_pb2.Run.STATE_SUCCEEDED, run.error
    by_id = {n["id"]: n for n in nodes}
    placed = {n.node_id: n.ray_node_id for n in run.nodes}
    assert placed["train"] == gpu_nodes[0]
    for execution in run.nodes:
        assert execution.ray_node_id in by_id, execution
        assert execution.ray_node_address == by_id[execution.ray_node_id]["address"]
    # Four one-CPU nodes at once do not fit the head's two CPUs: they spread over raylets.
    assert len({placed[f"prep{i}"] for i in range(4)} | {placed["start"]}) >= 2
