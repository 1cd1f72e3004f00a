"""Control-plane overhead.

1. GetPipeline calls per second against a bare grpcio server answering a trivial unary call,
   both measured here with the same layout: each server in its own child process (as in
   production, where clients are other processes), the client in this one over loopback,
   with 1, 2 and 4 client threads; reported as ratios (target >= 0.7). On the embedded
   SQLite the control plane serves pipelines from memory (storage/_owner.py), so beside it
   GetPipelineVersion shows a read that goes to the database every time.
2. p50/p99 latency of ListPipelineVersions (page of 50) with 10,000 versions stored in SQLite
   (target p99 <= 50 ms).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from concurrent import futures
from multiprocessing import Queue
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane.server import ControlPlane, ServerConfig
from raypipe.v1 import pipeline_pb2, pipeline_service_pb2_grpc, pipeline_spec_pb2
from raypipe.v1 import pipeline_service_pb2 as pb
from tests.bench._config import sized

DURATION_S = sized(5.0, 0.5)
#: Versions stored for the listing benchmark.
VERSIONS = sized(10_000, 1_000)
CLIENT_THREADS = 1
THREAD_COUNTS = (1, 2, 4)


class _Trivial(health_pb2_grpc.HealthServicer):
    """The baseline: a bare grpcio server whose handler does nothing but answer."""

    def Check(self, request, context):  # type: ignore[no-untyped-def]
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _throughput(call, request) -> float:  # type: ignore[no-untyped-def]
    """Calls per second from CLIENT_THREADS threads over DURATION_S."""
    stop = time.perf_counter() + DURATION_S
    counts = [0] * CLIENT_THREADS

    def worker(i: int) -> None:
        while time.perf_counter() < stop:
            call(request)
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENT_THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def _serve_bare(ports: Queue) -> None:  # type: ignore[type-arg]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    health_pb2_grpc.add_HealthServicer_to_server(_Trivial(), server)
    ports.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    server.wait_for_termination()


def _serve_raypipe(ports: Queue, data_dir: str) -> None:  # type: ignore[type-arg]
    plane = ControlPlane(ServerConfig(data_dir=Path(data_dir), port=0, enable_runs=False))
    ports.put(plane.start())
    plane.wait()


def _in_child(target, *args):  # type: ignore[no-untyped-def]
    """Start ``target`` in a spawned child process; return (process, the port it printed)."""
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=target, args=(ports, *args), daemon=True)
    proc.start()
    return proc, ports.get(timeout=60)


def _spec() -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.nodes.add(id="a", type="noop")
    spec.nodes.add(id="b", type="noop", depends_on=["a"])
    return spec


def main() -> None:
    global CLIENT_THREADS
    with tempfile.TemporaryDirectory() as tmp:
        bare_proc, bare_port = _in_child(_serve_bare)
        ours_proc, ours_port = _in_child(_serve_raypipe, tmp)
        try:
            bare = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{bare_port}"))
            ours = pipeline_service_pb2_grpc.PipelineServiceStub(
                grpc.insecure_channel(f"127.0.0.1:{ours_port}")
            )
            ours.CreatePipeline(pb.CreatePipelineRequest(pipeline_id="bench"))
            ours.CreatePipelineVersion(
                pb.CreatePipelineVersionRequest(
                    parent="pipelines/bench",
                    pipeline_version=pipeline_pb2.PipelineVersion(spec=_spec()),
                )
            )
            get = pb.GetPipelineRequest(name="pipelines/bench")
            get_version = pb.GetPipelineVersionRequest(name="pipelines/bench/versions/1")
            check = health_pb2.HealthCheckRequest()
            for _ in range(300):  # warm both channels and servers
                bare.Check(check)
                ours.GetPipeline(get)
                ours.GetPipelineVersion(get_version)
            print(
                "client threads | bare grpcio calls/s | GetPipeline calls/s | ratio (target >= 0.7)"
                " | GetPipelineVersion calls/s | ratio"
            )
            for threads in THREAD_COUNTS:
                CLIENT_THREADS = threads
                base = _throughput(bare.Check, check)
                rate = _throughput(ours.GetPipeline, get)
                uncached = _throughput(ours.GetPipelineVersion, get_version)
                print(
                    f"{threads:14d} | {base:19.0f} | {rate:19.0f} | {rate / base:21.2f}"
                    f" | {uncached:26.0f} | {uncached / base:5.2f}"
                )
        finally:
            bare_proc.kill()
            ours_proc.kill()

    with tempfile.TemporaryDirectory() as tmp:
        plane = ControlPlane(ServerConfig(data_dir=Path(tmp), port=0, enable_runs=False))
        plane.start()
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{plane.port}")
            stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
            # VERSIONS versions, written straight through the repository: the benchmark is about
            # reading them back through the API.
            repo = plane.repository
            assert repo is not None
            stub.CreatePipeline(pb.CreatePipelineRequest(pipeline_id="many"))
            spec = _spec()
            started = time.perf_counter()
            for _ in range(VERSIONS):
                repo.create_version(
                    "many", spec, spec_digest="0" * 64, description="", make_default=True
                )
            print(f"stored {VERSIONS:,} versions in {time.perf_counter() - started:.1f} s")
            list_request = pb.ListPipelineVersionsRequest(parent="pipelines/many", page_size=50)
            samples = []
            token = ""
            for i in range(sized(1000, 200)):
                list_request.page_token = token
                t0 = time.perf_counter()
                resp = stub.ListPipelineVersions(list_request)
                samples.append((time.perf_counter() - t0) * 1000)
                token = resp.next_page_token if i % 50 else ""  # walk deep pages and restart
            samples.sort()
            p50 = statistics.median(samples)
            p99 = samples[int(len(samples) * 0.99) - 1]
            print(
                f"ListPipelineVersions (50 of {VERSIONS:,}): p50 {p50:.2f} ms, p99 {p99:.2f} ms   (target p99 <= 50 ms)"
            )
            channel.close()
        finally:
            plane.stop(grace=1)


if __name__ == "__main__":
    main()
