"""Waiting for runs: reconnecting after UNAVAILABLE, timeouts, failed runs, handles.

A small RunService on a real gRPC server plays scripted streams, so that broken streams and
slow runs can be produced on demand; everything the client does goes over the wire.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from collections.abc import Generator, Iterator
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

import raypipe
from raypipe.cli import main
from raypipe.v1 import run_pb2, run_service_pb2, run_service_pb2_grpc

State = run_pb2.Run

NODE_STATES = {
    State.STATE_PENDING: run_pb2.NodeExecution.STATE_PENDING,
    State.STATE_RUNNING: run_pb2.NodeExecution.STATE_RUNNING,
    State.STATE_SUCCEEDED: run_pb2.NodeExecution.STATE_SUCCEEDED,
    State.STATE_FAILED: run_pb2.NodeExecution.STATE_FAILED,
}

# What each successive WatchRun call does: a list of run states to send, then how to end:
# "ok" (stream ends), "unavailable" (aborts UNAVAILABLE), "hang" (waits until cancelled).
Script = list[tuple[list[run_pb2.Run.State], str]]


class ScriptedRuns(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self) -> None:
        self.script: Script = []
        self.watch_calls = 0
        self.created: list[run_service_pb2.CreateRunRequest] = []
        self.lock = threading.Lock()

    def CreateRun(self, request, context):  # type: ignore[no-untyped-def]
        self.created.append(request)
        return run_service_pb2.CreateRunResponse(
            run=run_pb2.Run(
                name="runs/r1", pipeline=request.run.pipeline, state=State.STATE_PENDING
            )
        )

    def GetRun(self, request, context):  # type: ignore[no-untyped-def]
        if request.name == "runs/slow":
            time.sleep(1)
        return run_service_pb2.GetRunResponse(
            run=run_pb2.Run(name=request.name, state=State.STATE_RUNNING)
        )

    def WatchRun(self, request, context):  # type: ignore[no-untyped-def]
        with self.lock:
            index = self.watch_calls
            self.watch_calls += 1
        states, ending = self.script[min(index, len(self.script) - 1)]
        for i, state in enumerate(states):
            yield run_service_pb2.WatchRunResponse(
                event=run_pb2.RunEvent(sequence=i + 1, run_state=state),
                run=run_pb2.Run(
                    name=request.name,
                    state=state,
                    error=run_pb2.ExecutionError(node_id="train", message="boom")
                    if state == State.STATE_FAILED
                    else None,
                    nodes=[
                        run_pb2.NodeExecution(
                            node_id="train",
                            attempt=1,
                            state=NODE_STATES[state],
                            metrics={"accuracy": 0.93} if state == State.STATE_SUCCEEDED else {},
                        )
                    ],
                ),
            )
        if ending == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
        if ending == "hang":
            done = threading.Event()
            context.add_callback(done.set)
            done.wait(30)


@pytest.fixture
def runs() -> Iterator[tuple[ScriptedRuns, str]]:
    servicer = ScriptedRuns()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


BROKEN_TWICE: Script = [
    ([], "unavailable"),  # refused before anything arrives
    ([State.STATE_PENDING, State.STATE_RUNNING], "unavailable"),  # broken mid-stream
    ([State.STATE_RUNNING, State.STATE_SUCCEEDED], "ok"),
]


def test_wait_reconnects_after_unavailable(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = BROKEN_TWICE
    # retries=0: gRPC's own retry would hide the first failure; the SDK must cope alone.
    with raypipe.Client(address, retries=0) as client:
        run = client.wait_run("r1")
    assert run.state == State.STATE_SUCCEEDED
    assert run.name == "runs/r1"
    assert servicer.watch_calls == 3


def test_async_wait_reconnects_after_unavailable(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = BROKEN_TWICE

    async def wait() -> run_pb2.Run:
        async with raypipe.AsyncClient(address, retries=0) as client:
            return await client.wait_run("runs/r1")

    assert asyncio.run(wait()).state == State.STATE_SUCCEEDED
    assert servicer.watch_calls == 3


def test_wait_times_out_with_the_last_state(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING], "hang")]
    with raypipe.Client(address) as client, pytest.raises(raypipe.WaitTimeoutError) as info:
        client.wait_run("r1", timeout=0.5)
    assert info.value.run is not None
    assert info.value.run.state == State.STATE_RUNNING
    assert isinstance(info.value, TimeoutError)


def test_async_wait_times_out(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING], "hang")]

    async def wait() -> None:
        async with raypipe.AsyncClient(address) as client:
            await client.wait_run("r1", timeout=0.5)

    with pytest.raises(raypipe.WaitTimeoutError):
        asyncio.run(wait())


def test_failed_run_raises_or_returns(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING, State.STATE_FAILED], "ok")]
    with raypipe.Client(address) as client:
        with pytest.raises(raypipe.RunFailedError) as info:
            client.wait_run("r1")
        assert info.value.run.error.node_id == "train"
        assert "ended FAILED in node 'train': boom" in str(info.value)
        run = client.wait_run("r1", raise_on_failure=False)
        assert run.state == State.STATE_FAILED


def test_watch_yields_every_event_and_can_stop_early(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_PENDING, State.STATE_RUNNING], "hang")]
    with raypipe.Client(address) as client:
        stream = client.watch_run("r1")
        first = next(stream)
        assert first.event.sequence == 1
        assert first.run.state == State.STATE_PENDING
        assert next(stream).run.state == State.STATE_RUNNING
        assert isinstance(stream, Generator), "the documented way to stop: close the iterator"
        stream.close()  # cancels the call; the server's hang ends


def test_watch_takes_an_id_a_run_or_a_handle(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_PENDING, State.STATE_RUNNING, State.STATE_SUCCEEDED], "ok")]
    with raypipe.Client(address) as client:
        for run in ("r1", "runs/r1", run_pb2.Run(name="runs/r1")):
            events = list(client.watch(run))
            assert [e.run.state for e in events][-1] == State.STATE_SUCCEEDED
            assert {e.run.name for e in events} == {"runs/r1"}
        handle = client.get_run_handle("r1")
        assert handle.last is None
        assert len(list(client.watch(handle, timeout=10))) == 3
        assert handle.last is not None, "watching a handle keeps its last state current"
        assert handle.last.state == State.STATE_SUCCEEDED
        assert [e.run.state for e in client.watch_run("r1")][-1] == State.STATE_SUCCEEDED
    assert servicer.watch_calls == 5

    async def watch_async() -> tuple[list[int], raypipe.AsyncRunHandle]:
        async with raypipe.AsyncClient(address) as client:
            states = [e.run.state async for e in client.watch("r1")]
            handle = client.get_run_handle(run_pb2.Run(name="runs/r1"))
            async for _ in client.watch(handle):
                pass
            return states, handle

    states, handle = asyncio.run(watch_async())
    assert states[-1] == State.STATE_SUCCEEDED
    assert handle.last is not None
    assert handle.last.state == State.STATE_SUCCEEDED


def test_handle_runs_and_waits(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING, State.STATE_SUCCEEDED], "ok")]
    with raypipe.Client(address) as client:
        handle = client.run("churn", parameters={"lr": 0.1, "layers": [64, 32]})
        assert handle.name == "runs/r1"
        assert handle.last is not None
        assert handle.last.state == State.STATE_PENDING
        run = handle.wait()
        assert run.state == State.STATE_SUCCEEDED
        assert handle.last is run
        assert "SUCCEEDED" in repr(handle)
        assert client.get_run_handle("r1").get().state == State.STATE_RUNNING
    request = servicer.created[0]
    assert request.run.pipeline == "pipelines/churn"
    assert request.request_id, "a request id is generated for idempotent retries"
    assert request.run.parameters["layers"].list_value.values[1].number_value == 32


def test_async_handle(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_FAILED], "ok")]

    async def go() -> raypipe.AsyncRunHandle:
        async with raypipe.AsyncClient(address) as client:
            handle = await client.run("churn", request_id="fixed")
            with pytest.raises(raypipe.RunFailedError):
                await handle.wait()
            return handle

    handle = asyncio.run(go())
    assert handle.last is not None
    assert handle.last.state == State.STATE_FAILED
    assert servicer.created[0].request_id == "fixed"


def test_unary_calls_carry_the_default_timeout(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING], "hang")]
    with raypipe.Client(address, timeout=0.3) as client:
        with pytest.raises(raypipe.DeadlineExceededError):
            client.get_run("slow")
        assert client.with_options(timeout=5).get_run("slow").name == "runs/slow"
        # The stream has no deadline unless given one...
        stream = client.watch_run("r1")
        assert next(stream).run.state == State.STATE_RUNNING
        assert isinstance(stream, Generator)
        stream.close()
        # ... but given one, it ends with DEADLINE_EXCEEDED as a typed error.
        with pytest.raises(raypipe.DeadlineExceededError):
            list(client.watch_run("r1", timeout=0.3))


# --- the CLI's run --watch over the same scripted streams ------------------------------------


def test_cli_run_watch_shows_nodes_and_metrics(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = BROKEN_TWICE
    result = CliRunner().invoke(
        main, ["--address", address, "run", "churn", "--watch", "-p", "lr=0.5", "-p", "tag=x"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["runs/r1", "SUCCEEDED"]
    assert lines[2].split() == ["train", "SUCCEEDED", "1"]  # no type: no PipelineService here
    assert any(line.split() == ["train", "accuracy", "0.93"] for line in lines), lines
    assert lines[-1].startswith("runs/r1 SUCCEEDED in")
    parameters = servicer.created[0].run.parameters
    assert parameters["lr"].number_value == 0.5, "a value that parses as JSON is JSON"
    assert parameters["tag"].string_value == "x", "anything else is a string"


def test_cli_watch_of_a_failed_run_exits_7(runs: tuple[ScriptedRuns, str]) -> None:
    servicer, address = runs
    servicer.script = [([State.STATE_RUNNING, State.STATE_FAILED], "ok")]
    result = CliRunner().invoke(main, ["--address", address, "runs", "watch", "r1"])
    assert result.exit_code == 7
    assert "FAILED" in result.stdout
    assert result.stderr == "error: RUN_FAILED: run runs/r1 ended FAILED in node 'train': boom\n"

    as_json = CliRunner().invoke(main, ["--address", address, "runs", "watch", "r1", "-o", "json"])
    assert as_json.exit_code == 7
    assert json.loads(as_json.stdout)["state"] == "STATE_FAILED"


# --- TLS --------------------------------------------------------------------------------------


def self_signed_certificate() -> tuple[bytes, bytes]:
    """A certificate for localhost and its key, both PEM."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_credentials_make_a_tls_channel() -> None:
    cert, key = self_signed_certificate()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(ScriptedRuns(), server)
    port = server.add_secure_port("localhost:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        tls = grpc.ssl_channel_credentials(root_certificates=cert)
        with raypipe.Client(f"localhost:{port}", credentials=tls) as client:
            assert client.get_run("r1").name == "runs/r1"
        with (
            raypipe.Client(f"localhost:{port}", retries=0, timeout=5) as plaintext,
            pytest.raises(raypipe.UnavailableError),
        ):
            plaintext.get_run("r1")
    finally:
        server.stop(0)
