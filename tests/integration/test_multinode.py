"""raypipe on a Ray cluster of several raylets on this machine: a head started with
`ray start --head`, two workers joined to it with `ray start --address` (one declaring a logical
GPU and a custom resource, one with CPUs only), and `raypipe serve --ray-address` against it. A
node that asks for a GPU runs on the GPU worker; every node records the Ray node it ran on; the
preprocessor's partitions spread over every raylet, both workers included, and still equal
pandas; a raylet killed with kill -9 in the middle of a node costs one retry elsewhere; a node
whose only eligible worker leaves fails naming the resource; and with an autoscaler's cluster
config in Ray's autoscaler state, a GPU node waits for a GPU worker.

The tests share one cluster and run in this file's order: the later ones take workers away.

The head is started the way `ray_nodes.cluster` starts one (`ray start --head` in an OS session
of its own, with token authentication), from a process of its own so that this process's Ray
set-up, the session head's, stays as it is; it is stopped by its session. Each worker runs
`ray start --block` as a child process of the test in a session of its own, so terminating it
stops exactly that raylet and its processes. No `ray stop`, which would end every cluster on the
machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

import raypipe
from ray_nodes.cluster import find_local_head
from raypipe.v1 import run_pb2
from tests.integration.conftest import ServerProcess, live_ray_nodes, ray_free_env, run_driver
from tests.unit.test_node_preprocessor import messy_frame, pandas_result

RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
#: A small object store per raylet: three of them share this machine's memory.
STORE_BYTES = 200 * 1024 * 1024


@dataclass
class Cluster:
    server: ServerProcess
    env: dict[str, str]
    tmp: Path
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
        return live_ray_nodes(self.env)

    def driver(self, script: str) -> str:
        """Run ``script`` as a driver of the cluster (a process of its own); its stdout."""
        return run_driver(self.env, script)

    def kill_raylet(self, name: str) -> None:
        """kill -9 the raylet of worker ``name`` (its other processes notice and end)."""
        children = psutil.Process(self.workers[name].pid).children(recursive=True)
        (raylet,) = [p for p in children if p.name() == "raylet"]
        raylet.kill()
        self.workers[name].wait(timeout=120)  # `ray start --block` exits once its raylet died

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
    head_dir = tmp / "head"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from ray_nodes.cluster import "
            "ensure_local_head; ensure_local_head(Path(sys.argv[1]), num_cpus=2, "
            "object_store_memory=int(sys.argv[2]), timeout_s=180)",
            str(head_dir),
            str(STORE_BYTES),
        ],
        env=ray_free_env(),
        check=True,
        timeout=240,
    )
    head = find_local_head(head_dir)
    assert head is not None, "ray start --head left no running head"
    server = ServerProcess(
        tmp / "data",
        "--ray-address",
        head.address,
        "--no-mlflow-tracking",
        "--no-http",
        "--data-root",
        str(tmp),
        env=head.client_env(),
        own_ray=True,
    )
    built = Cluster(server, head.client_env(), tmp)
    try:
        server.start(timeout=180)
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
        if server.proc is not None and server.proc.poll() is None:
            server.terminate(timeout=120)
        built.stop()
        head.stop()


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


def node_ids_of_tasks(cluster: Cluster, prefix: str, at_least: int) -> list[str]:
    """The Ray node of every finished task whose name starts with ``prefix`` (Ray's State
    API), once it lists ``at_least`` of them: task events reach the GCS asynchronously, so a
    run's last tasks may show a moment after the run has ended."""
    code = (
        "import json, ray\n"
        "from ray.util.state import list_tasks\n"
        "ray.init(log_to_driver=False)\n"
        "tasks = list_tasks(limit=10000, detail=True, raise_on_missing_output=False)\n"
        f"print(json.dumps([t.node_id for t in tasks if (t.name or '').startswith({prefix!r})"
        " and t.state == 'FINISHED']))\n"
    )
    deadline = time.monotonic() + 60
    while True:
        placed = list(json.loads(cluster.driver(code).strip().splitlines()[-1]))
        if len(placed) >= at_least or time.monotonic() > deadline:
            return placed
        time.sleep(1)


def test_the_preprocessors_partitions_spread_over_both_workers_and_equal_pandas(
    cluster: Cluster,
) -> None:
    frame = messy_frame(6000, seed=11)
    path = cluster.tmp / "messy.csv"
    frame.to_csv(path, index=False)
    spec: dict[str, Any] = {
        "nodes": [
            {"id": "load", "type": "data_loader", "params": {"path": str(path)}},
            {
                "id": "clean",
                "type": "data_preprocessor",
                "depends_on": ["load"],
                "params": {"drop_duplicates": True, "fill_missing": "median", "partitions": 6},
                "cache": {"enabled": True},  # its output is stored: the test reads it back
            },
        ]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="spread")
        run = client.wait_run(client.create_run("spread"), timeout=300)
    assert run.state == run_pb2.Run.STATE_SUCCEEDED, run.error
    (clean,) = [n for n in run.nodes if n.node_id == "clean"]
    assert clean.metrics["partitions"] == 6
    got = pd.read_parquet(clean.artifacts[0].uri)
    expected = pandas_result(pd.read_csv(path), True, False, "median", None)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    placed = node_ids_of_tasks(cluster, "spread/clean/", at_least=6)
    assert len(placed) >= 6  # the partition tasks of the node's rounds
    # In proportion to the raylets' CPUs: the head's two, the GPU worker's one, the CPU
    # worker's two (ray_nodes.nodes.partitions.spread_slots).
    for name in ("gpu", "cpu"):
        assert worker_id(cluster, name) in placed, (name, placed)
    assert len(set(placed)) == 3, placed


def test_a_raylet_killed_mid_node_costs_one_retry_elsewhere_and_the_run_completes(
    cluster: Cluster,
) -> None:
    sleeper = {"type": "noop", "params": {"sleep_seconds": 12}, "retry": {"max_retries": 1}}
    spec: dict[str, Any] = {
        # Two CPUs each: one fits the head, the other the CPU worker (the GPU worker has one).
        "nodes": [
            {"id": node_id, **sleeper, "resources": {"num_cpus": 2}} for node_id in ("a", "b")
        ]
    }
    cpu_worker = worker_id(cluster, "cpu")
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="survivor")
        run = client.create_run("survivor")
        deadline = time.monotonic() + 120
        while True:
            placed = {n.node_id: n.ray_node_id for n in client.get_run(run).nodes}
            if all(placed.values()):
                break
            assert time.monotonic() < deadline, placed
            time.sleep(0.5)
        assert cpu_worker in placed.values(), placed  # one of them runs on the CPU worker
        victim = next(node_id for node_id, where in placed.items() if where == cpu_worker)
        cluster.kill_raylet("cpu")
        done = client.wait_run(run, timeout=300)
    assert done.state == run_pb2.Run.STATE_SUCCEEDED, done.error
    by_id = {n.node_id: n for n in done.nodes}
    assert by_id[victim].attempt == 2  # Ray ran it again: the record counts both tries
    assert by_id[victim].ray_node_id != cpu_worker  # elsewhere
    survivor = "a" if victim == "b" else "b"
    assert by_id[survivor].attempt == 1


def test_a_node_whose_only_eligible_worker_left_fails_naming_the_resource(
    cluster: Cluster,
) -> None:
    spec: dict[str, Any] = {
        "nodes": [
            {"id": "first", "type": "noop", "params": {"sleep_seconds": 8}},
            {
                "id": "train",
                "type": "noop",
                "depends_on": ["first"],
                "resources": {"num_gpus": 1},
            },
        ]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="stranded")
        run = client.create_run("stranded")  # the GPU worker is there: the run is accepted
        deadline = time.monotonic() + 120
        while client.get_run(run).nodes[0].state != run_pb2.NodeExecution.STATE_RUNNING:
            assert time.monotonic() < deadline, "the first node never ran"
            time.sleep(0.2)  # the graph is in Ray, "train" waiting for "first"
        worker = cluster.workers.pop("gpu")
        worker.terminate()  # the only GPU worker leaves while the run waits
        worker.wait(timeout=120)
        done = client.wait_run(run, timeout=300, raise_on_failure=False)
    assert done.state == run_pb2.Run.STATE_FAILED
    (train,) = [n for n in done.nodes if n.node_id == "train"]
    assert train.state == run_pb2.NodeExecution.STATE_FAILED
    assert train.error.type == "raypipe.ResourceUnavailable"
    assert "1 GPU(s) but no node of the cluster has any GPU" in train.error.message
    assert "have left the cluster" in train.error.message


def test_with_an_autoscaler_a_gpu_node_waits_for_a_gpu_worker(cluster: Cluster) -> None:
    # What an autoscaler reports to Ray's autoscaler state (KubeRay's and Ray's v2 do): its
    # node types. The test then plays the autoscaler's part and starts such a worker.
    cluster.driver(
        "import ray\n"
        "from ray.core.generated import autoscaler_pb2\n"
        "from ray.experimental.internal_kv import _internal_kv_put\n"
        "ray.init(log_to_driver=False)\n"
        "config = autoscaler_pb2.ClusterConfig()\n"
        "group = config.node_group_configs.add(name='gpu', min_count=0, max_count=1)\n"
        "group.resources.update({'CPU': 1, 'GPU': 1})\n"
        "_internal_kv_put(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), "
        "config.SerializeToString(), overwrite=True, "
        "namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode())\n"
    )
    assert all(not n["resources"].get("GPU") for n in cluster.nodes())
    spec: dict[str, Any] = {
        "nodes": [{"id": "train", "type": "noop", "resources": {"num_gpus": 1}}]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="scaled")
        run = client.create_run("scaled")
        time.sleep(6)  # three checks of the cluster's capacity: it waits, not fails
        assert client.get_run(run).state in (run_pb2.Run.STATE_PENDING, run_pb2.Run.STATE_RUNNING)
        cluster.join("gpu2", cluster.tmp / "gpu2-worker.log", "--num-cpus=1", "--num-gpus=1")
        done = client.wait_run(run, timeout=300)
    assert done.state == run_pb2.Run.STATE_SUCCEEDED, done.error
    (train,) = done.nodes
    gpu_nodes = [n["id"] for n in cluster.nodes() if n["resources"].get("GPU")]
    assert train.ray_node_id in gpu_nodes


def worker_id(cluster: Cluster, name: str) -> str:
    """The Ray node id of worker ``name``, by the resources it declared."""
    for node in cluster.nodes():
        resources = node["resources"]
        if name == "gpu" and resources.get("gpu_box"):
            return str(node["id"])
        head = any(k.startswith("node:__internal_head__") for k in resources)
        if name == "cpu" and not head and not resources.get("GPU") and resources.get("CPU") == 2:
            return str(node["id"])
    raise AssertionError(f"no worker {name} in {cluster.nodes()}")
