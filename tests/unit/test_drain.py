"""DrainGate on a real gRPC server: calls in flight finish, new ones get UNAVAILABLE."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from control_plane.drain import DrainGate

SERVICE = "test.Slow"


class _Slow:
    """A unary method and a streaming one that block until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        return b"done:" + request

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self.calls += 1
        yield b"first"
        self.entered.set()
        assert self.release.wait(10)
        yield b"last"


@pytest.fixture
def served() -> Iterator[tuple[grpc.Channel, DrainGate, _Slow, grpc.Server]]:
    slow = _Slow()
    gate = DrainGate((SERVICE,))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[gate])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(slow.unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(slow.stream),
                },
            ),
        )
    )
    checks = health.HealthServicer()
    checks.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, gate, slow, server
    slow.release.set()
    channel.close()
    server.stop(0).wait()


def _reason(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def _drain_in_background(gate: DrainGate, timeout: float) -> futures.Future[bool]:
    pool = futures.ThreadPoolExecutor(max_workers=1)
    done = pool.submit(gate.drain, timeout)
    pool.shutdown(wait=False)
    return done


def _wait_until_draining(gate: DrainGate) -> None:
    # drain() sets the flag before it waits; _enter() reads it under the same lock.
    for _ in range(500):
        if not gate._enter():
            return
        gate._leave()
        threading.Event().wait(0.01)
    raise AssertionError("the gate never started draining")


def test_a_unary_call_in_flight_finishes_and_new_calls_get_unavailable(served: Any) -> None:
    channel, gate, slow, _ = served
    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    in_flight = unary.future(b"a", timeout=10)
    assert slow.entered.wait(10)
    assert gate.active == 1

    drained = _drain_in_background(gate, 10)
    _wait_until_draining(gate)
    with pytest.raises(grpc.RpcError) as refused:
        unary(b"b", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _reason(refused.value) == "SHUTTING_DOWN"
    assert "shutting down" in (refused.value.details() or "")
    assert slow.calls == 1, "the refused call reached the servicer"
    assert not drained.done(), "drain returned with a call in flight"

    slow.release.set()
    assert in_flight.result(timeout=10) == b"done:a"
    assert drained.result(timeout=10) is True
    assert gate.active == 0


def test_a_stream_in_flight_holds_the_drain_until_it_ends(served: Any) -> None:
    channel, gate, slow, _ = served
    stream = channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=10)
    assert next(stream) == b"first"
    assert slow.entered.wait(10)
    drained = _drain_in_background(gate, 10)
    _wait_until_draining(gate)
    with pytest.raises(grpc.RpcError) as refused:
        list(channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=5))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not drained.done()
    slow.release.set()
    assert list(stream) == [b"last"]
    assert drained.result(timeout=10) is True


def test_a_stream_the_client_cancels_is_counted_out(served: Any) -> None:
    channel, gate, slow, _ = served
    stream = channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=10)
    assert next(stream) == b"first"
    assert slow.entered.wait(10)
    assert gate.active == 1
    stream.cancel()
    # The servicer is still blocked (for up to 10 s), but the call has ended: the drain need
    # not wait for it.
    assert gate.drain(3) is True
    assert gate.active == 0


def test_drain_gives_up_after_its_timeout(served: Any) -> None:
    channel, gate, slow, _ = served
    in_flight = channel.unary_unary(f"/{SERVICE}/Unary").future(b"a", timeout=10)
    assert slow.entered.wait(10)
    assert gate.drain(0.2) is False
    assert gate.active == 1
    slow.release.set()
    assert in_flight.result(timeout=10) == b"done:a"
    assert gate.drain(10) is True
    assert gate.active == 0


def test_health_is_not_gated(served: Any) -> None:
    channel, gate, _, _ = served
    assert gate.drain(1) is True
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
