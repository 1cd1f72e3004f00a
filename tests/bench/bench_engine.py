"""Engine overhead against raw Ray, measured in the same run on the same local cluster.

1. A 200-node ``noop`` chain from CreateRun to SUCCEEDED (through the gRPC control plane)
   against a raw chain of 200 ``.remote`` calls, each taking the previous one's ref
   (target ratio <= 1.3).
2. A 1,000-node fan-out joined by one node, against 1,000 raw tasks joined by one
   (target ratio <= 1.5).
3. A one-node run from CreateRun to SUCCEEDED: median latency (target <= 0.3 s).

The client waits as ``Client.wait_run`` does, on a WatchRun of the run's state changes (the
raw side's driver waits on the last ref). Beside it, the same runs with a watcher of every
event, as a progress display would follow them: two per node, streamed one message each.

The control plane runs in a child process (as `raypipe serve` would), this process is its
client, and both sides share one local Ray cluster of 2 CPUs.

Each figure is the median of several repetitions after a warm-up, so worker start-up is
not counted for either side.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import ray

from control_plane.server import ControlPlane, ServerConfig
from ray_nodes.cluster import ensure_local_head
from raypipe.v1 import (
    pipeline_pb2,
    pipeline_service_pb2_grpc,
    pipeline_spec_pb2,
    run_pb2,
    run_service_pb2_grpc,
)
from raypipe.v1 import pipeline_service_pb2 as ppb
from raypipe.v1 import run_service_pb2 as rpb
from tests.bench._config import repeats, sized

REPEATS = repeats(5)
#: Nodes of the chain and of the fan-out.
CHAIN, FANOUT = sized(200, 20), sized(1000, 50)


def _nothing(*_: object) -> None:
    return None


# Ray's stubs type a remote function of *args as taking no arguments.
_raw: Any = ray.remote(num_cpus=1)(_nothing)


def raw_chain(n: int) -> float:
    started = time.perf_counter()
    ref = _raw.remote()
    for _ in range(n - 1):
        ref = _raw.remote(ref)
    ray.get(ref)
    return time.perf_counter() - started


def raw_fanout(n: int) -> float:
    started = time.perf_counter()
    ray.get(_raw.remote(*[_raw.remote() for _ in range(n)]))
    return time.perf_counter() - started


def chain_spec(n: int) -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    for i in range(n):
        spec.nodes.add(id=f"n{i}", type="noop", depends_on=[f"n{i - 1}"] if i else [])
    return spec


def fanout_spec(n: int) -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    for i in range(n):
        spec.nodes.add(id=f"n{i}", type="noop")
    spec.nodes.add(id="join", type="noop", depends_on=[f"n{i}" for i in range(n)])
    return spec


class Api:
    def __init__(self, port: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(channel)

    def register(self, pipeline_id: str, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        self.pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id=pipeline_id))
        self.pipelines.CreatePipelineVersion(
            ppb.CreatePipelineVersionRequest(
                parent=f"pipelines/{pipeline_id}",
                pipeline_version=pipeline_pb2.PipelineVersion(spec=spec),
            )
        )

    def run_to_end(self, pipeline_id: str, every_event: bool = False) -> float:
        """Seconds from CreateRun to the SUCCEEDED event on WatchRun (run-state changes only,
        unless ``every_event``)."""
        types = [] if every_event else [run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED]
        started = time.perf_counter()
        run = self.runs.CreateRun(
            rpb.CreateRunRequest(run=run_pb2.Run(pipeline=f"pipelines/{pipeline_id}"))
        ).run
        state = run.state
        for response in self.runs.WatchRun(rpb.WatchRunRequest(name=run.name, event_types=types)):
            if response.HasField("run"):
                state = response.run.state
        elapsed = time.perf_counter() - started
        assert state == run_pb2.Run.State.STATE_SUCCEEDED, run_pb2.Run.State.Name(state)
        return elapsed


def _median(fn, *args) -> float:  # type: ignore[no-untyped-def]
    fn(*args)  # warm-up
    return statistics.median(fn(*args) for _ in range(REPEATS))


def _serve(ports: Any, data_dir: str, ray_address: str) -> None:
    """The control plane in its own process, as `raypipe serve` runs it (MLflow tracking off)."""
    plane = ControlPlane(ServerConfig(data_dir=Path(data_dir), port=0, ray_address=ray_address))
    ports.put(plane.start())
    plane.wait()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        head = ensure_local_head(Path(tmp) / "ray", num_cpus=2, dashboard=False)
        # The raw side runs on the same head: without this, its first .remote() would start
        # a second, private Ray instance of its own.
        ray.init(address=head.address, log_to_driver=False)
        # The server runs in a child process, the client (this process) elsewhere, as in
        # production: in one process the client's thread that parses the stream would share
        # the server's interpreter lock.
        ctx = mp.get_context("spawn")
        ports = ctx.Queue()
        server = ctx.Process(
            target=_serve, args=(ports, str(Path(tmp) / "data"), head.address), daemon=True
        )
        server.start()
        try:
            api = Api(ports.get(timeout=120))
            api.register("chain", chain_spec(CHAIN))
            api.register("fanout", fanout_spec(FANOUT))
            api.register("one", chain_spec(1))
            rows = []
            for name, raw_fn, n, pipeline, target in (
                (f"{CHAIN:,}-node chain", raw_chain, CHAIN, "chain", 1.3),
                (f"{FANOUT:,}-node fan-out + join", raw_fanout, FANOUT, "fanout", 1.5),
            ):
                raw = _median(raw_fn, n)
                ours = _median(api.run_to_end, pipeline)
                every = _median(api.run_to_end, pipeline, True)
                rows.append((name, raw, ours, every, target))
            print(
                f"{'graph':28} {'raw Ray s':>10} {'raypipe s':>10} {'ratio':>7}  target"
                f"   {'every event s':>14} {'ratio':>7}"
            )
            for name, raw_s, ours_s, every_s, target in rows:
                print(
                    f"{name:28} {raw_s:10.3f} {ours_s:10.3f} {ours_s / raw_s:7.2f}  <= {target}"
                    f"   {every_s:14.3f} {every_s / raw_s:7.2f}"
                )
            one = _median(api.run_to_end, "one")
            print(f"one-node run, CreateRun to SUCCEEDED: median {one:.3f} s  (target <= 0.3 s)")
        finally:
            server.terminate()  # SIGTERM: the server drains and closes its storage
            server.join(timeout=30)
            ray.shutdown()
            head.stop()


if __name__ == "__main__":
    main()
