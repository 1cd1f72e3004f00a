"""raypipe on a Ray cluster with Ray's own autoscaler (v2): a head started with
`ray start --head --autoscaling-config`, whose autoscaler (Ray's monitor process, making its
own decisions) launches worker raylets on this machine through the node provider Ray ships
for that (`FakeMultiNodeProvider`, as an external provider), and `raypipe serve --ray-address`
against it. The cluster starts with no GPU; its one node type beside the head has one.

A node asking for one GPU is accepted and waits: the autoscaler sees the demand and adds a GPU
node, and the node runs there. A node asking for more GPUs than any node type has is refused
by the autoscaler (its reported state lists the request as infeasible), and fails naming it,
without waiting out `--autoscaler-wait-seconds`.

The head runs `ray start --block` in an OS session of its own, and the raylets its autoscaler
starts are in that session too: the test stops them all by it. No `ray stop`."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import raypipe
from ray_nodes.cluster import _free_ports, _stop_session, _temp_dir_for
from raypipe.v1 import run_pb2
from tests.integration.conftest import ServerProcess, live_ray_nodes, ray_free_env

RAY = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
STORE_BYTES = 200 * 1024 * 1024
#: The node id Ray's autoscaler v2 expects of the head under this node provider.
HEAD_ID = "f" * 51 + "00000"
#: What --autoscaler-wait-seconds is here: far longer than the autoscaler takes to add a node.
WAIT_S = 240


@dataclass
class AutoscaledCluster:
    server: ServerProcess
    env: dict[str, str]

    def nodes(self) -> list[dict[str, Any]]:
        return live_ray_nodes(self.env)


def autoscaling_config(gcs_address: str) -> dict[str, Any]:
    """A cluster config of Ray's autoscaler: the head (CPUs only) and up to one GPU node."""
    return {
        "cluster_name": "raypipe-test",
        "max_workers": 1,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 10,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": gcs_address,
            "launch_multiple": True,
            "head_node_id": HEAD_ID,
        },
        "auth": {"ssh_user": "ray"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
            "gpu": {
                "resources": {"CPU": 1, "GPU": 1, "object_store_memory": STORE_BYTES},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 1,
            },
        },
        # An external provider gets none of a built-in one's defaults, and Ray's autoscaler
        # reads these keys all the same.
        **{
            key: []
            for key in (
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
            )
        },
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AutoscaledCluster]:
    tmp = tmp_path_factory.mktemp("autoscaler")
    (gcs_port,) = _free_ports(1)
    address = f"127.0.0.1:{gcs_port}"
    token = tmp / "ray-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    config = tmp / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(address)))
    temp_dir = _temp_dir_for(tmp)  # short: Ray's unix sockets live under it
    with open(tmp / "head.log", "ab") as log:
        head = subprocess.Popen(
            [
                *RAY,
                "start",
                "--head",
                "--block",
                f"--port={gcs_port}",
                "--num-cpus=2",
                "--num-gpus=0",
                "--include-dashboard=false",
                f"--temp-dir={temp_dir}",
                f"--autoscaling-config={config}",
                f"--object-store-memory={STORE_BYTES}",
                "--disable-usage-stats",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **ray_free_env(),
                **auth,
                "RAY_FAKE_CLUSTER": "1",  # the node provider's own switch
                "RAY_enable_autoscaler_v2": "1",
                "RAY_CLOUD_INSTANCE_ID": HEAD_ID,
                "RAY_OVERRIDE_NODE_ID_FOR_TESTING": HEAD_ID,
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            },
            start_new_session=True,
        )
    env = {**auth, "RAY_ADDRESS": address}
    server = ServerProcess(
        tmp / "data",
        "--ray-address",
        address,
        "--no-mlflow-tracking",
        "--no-http",
        "--autoscaler-wait-seconds",
        str(WAIT_S),
        env=env,
        own_ray=True,
    )
    built = AutoscaledCluster(server, env)
    try:
        deadline = time.monotonic() + 180
        while not (temp_dir / "ray_current_cluster").exists():
            assert head.poll() is None, (tmp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the head did not start"
            time.sleep(1)
        server.start(timeout=180)
        yield built
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.terminate(timeout=120)
        _stop_session(head.pid, temp_dir, grace_s=10)
        head.wait(timeout=60)


def test_a_gpu_node_waits_for_rays_autoscaler_to_add_a_gpu_node(
    cluster: AutoscaledCluster,
) -> None:
    before = cluster.nodes()
    assert len(before) == 1
    assert not before[0]["resources"].get("GPU")
    spec: dict[str, Any] = {
        "nodes": [
            {"id": "prep", "type": "noop"},
            {"id": "train", "type": "noop", "depends_on": ["prep"], "resources": {"num_gpus": 1}},
        ]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="scaled")
        done = client.wait_run(client.create_run("scaled"), timeout=WAIT_S)
    assert done.state == run_pb2.Run.STATE_SUCCEEDED, done.error
    placed = {n.node_id: n.ray_node_id for n in done.nodes}
    added = {n["id"] for n in cluster.nodes() if n["resources"].get("GPU")} - {before[0]["id"]}
    assert placed["train"] in added  # on the GPU node the autoscaler added for it
    assert placed["prep"] == before[0]["id"]


def test_a_node_the_autoscaler_can_never_hold_fails_naming_the_resource(
    cluster: AutoscaledCluster,
) -> None:
    spec: dict[str, Any] = {
        "nodes": [{"id": "train", "type": "noop", "resources": {"num_gpus": 4}}]
    }
    with raypipe.Client(cluster.server.address) as client:
        client.apply(spec, pipeline="too-big")
        run = client.create_run("too-big")  # accepted: the autoscaler has not said no yet
        done = client.wait_run(run, timeout=WAIT_S, raise_on_failure=False)
    assert done.state == run_pb2.Run.STATE_FAILED
    (train,) = done.nodes
    assert train.error.type == "raypipe.ResourceUnavailable"
    assert "asks for 4 GPU(s)" in train.error.message
    # The autoscaler's verdict, not the end of the wait.
    assert train.error.message.endswith("the cluster's autoscaler can add no node that holds it")
