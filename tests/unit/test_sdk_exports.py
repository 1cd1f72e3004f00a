"""The SDK's public surface: the exported names, and a wrapper for every RPC of every service.

Services are discovered from the generated descriptors of every module of ``raypipe.v1``, so
an RPC added to the proto without SDK support fails this suite (as Temporal's
``test_all_grpc_calls_present`` does).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

import raypipe
import raypipe.v1
from raypipe.v1 import schedule_pb2

EXPECTED_EXPORTS = {
    "AbortedError",
    "AlreadyExistsError",
    "ApplyResult",
    "AsyncClient",
    "AsyncPageIterator",
    "AsyncRunHandle",
    "CancelledError",
    "Client",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "Page",
    "PageIterator",
    "PermissionDeniedError",
    "Pipeline",
    "RPCError",
    "RaypipeError",
    "ResourceExhaustedError",
    "RunFailedError",
    "RunHandle",
    "SpecError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "WaitTimeoutError",
    "dump_spec",
    "dumps_spec",
    "error_from_rpc_error",
    "error_from_status",
    "load_spec",
    "loads_spec",
    "spec_from_dict",
    "spec_to_dict",
}


def test_all_is_pinned() -> None:
    assert set(raypipe.__all__) == EXPECTED_EXPORTS
    assert len(raypipe.__all__) == len(set(raypipe.__all__)), "duplicates in __all__"
    for name in raypipe.__all__:
        assert getattr(raypipe, name) is not None, name


def test_public_names_come_from_private_modules() -> None:
    for name in raypipe.__all__:
        module = getattr(getattr(raypipe, name), "__module__", "")
        assert module.startswith("raypipe._"), f"{name} is defined in {module}"


def test_every_public_callable_has_a_docstring() -> None:
    for name in raypipe.__all__:
        obj = getattr(raypipe, name)
        assert inspect.getdoc(obj), f"raypipe.{name} has no docstring"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert inspect.getdoc(member), f"raypipe.{name}.{attr} has no docstring"


CONVENIENCES = ("apply", "run", "get_run_handle", "wait_run", "watch")


def test_both_clients_have_the_conveniences() -> None:
    """Beyond one method per RPC: what the docs show (``client.run(...).wait()``,
    ``client.watch(run)``), with the same parameters on both clients."""
    for name in CONVENIENCES:
        sync, aio = getattr(raypipe.Client, name), getattr(raypipe.AsyncClient, name)
        assert inspect.getdoc(sync), f"Client.{name} has no docstring"
        assert inspect.signature(sync).parameters.keys() == (
            inspect.signature(aio).parameters.keys()
        ), name


# --- every RPC ---------------------------------------------------------------------------


def all_services() -> list[Any]:
    """Every service of every generated module of raypipe.v1."""
    services = {}
    for info in pkgutil.iter_modules(raypipe.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"raypipe.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            services[service.full_name] = service
    return list(services.values())


def all_methods() -> list[Any]:
    return [m for s in all_services() for m in s.methods]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_services_are_discovered() -> None:
    names = {s.full_name for s in all_services()}
    assert {"raypipe.v1.PipelineService", "raypipe.v1.RunService"} <= names


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_client_wraps_every_rpc(method: Any) -> None:
    attr = snake(method.name)
    sync = getattr(raypipe.Client, attr, None)
    assert callable(sync), f"raypipe.Client has no {attr}() for {method.full_name}"
    aio = getattr(raypipe.AsyncClient, attr, None)
    assert callable(aio), f"raypipe.AsyncClient has no {attr}() for {method.full_name}"
    if method.server_streaming:
        assert inspect.isasyncgenfunction(aio), f"AsyncClient.{attr} must be an async iterator"
    elif "next_page_token" in method.output_type.fields_by_name:
        assert not inspect.iscoroutinefunction(aio), f"AsyncClient.{attr} returns a pager"
    else:
        assert inspect.iscoroutinefunction(aio), f"AsyncClient.{attr} must be a coroutine"
    assert inspect.getdoc(sync), f"Client.{attr} has no docstring"


# --- each wrapper calls its own RPC: through a real gRPC server that records calls ---------

# Arguments that make each SDK method issue its RPC. A new RPC needs an entry here too.
SAMPLE_ARGS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "CreatePipeline": (("churn",), {"display_name": "Churn"}),
    "GetPipeline": (("churn",), {}),
    "ListPipelines": ((), {"page_size": 5}),
    "DeletePipeline": (("churn",), {"force": True}),
    "CreatePipelineVersion": (("churn", {"nodes": [{"id": "a", "type": "noop"}]}), {}),
    "GetPipelineVersion": (("churn", 2), {}),
    "ListPipelineVersions": (("churn",), {}),
    "RollbackPipeline": (("churn", 1), {}),
    "ValidatePipelineSpec": (({"nodes": [{"id": "a", "type": "noop"}]},), {}),
    "ListNodeTypes": ((), {}),
    "CreateRun": (("churn",), {"parameters": {"lr": 0.1}}),
    "GetRun": (("abc",), {}),
    "ListRuns": ((), {"pipeline": "churn", "states": ["running"]}),
    "CancelRun": (("abc",), {}),
    "WatchRun": (("abc",), {}),
    "RetryRun": (("abc",), {}),
    "GetNodeLogs": (("abc", "train"), {"attempt": 1, "offset": 5, "limit": 10}),
    "WatchNodeLogs": (("abc", "train"), {"attempt": 2, "offset": 5}),
    "CreateSchedule": (
        ("churn",),
        {"cron": "0 6 * * MON-FRI", "time_zone": "Europe/Berlin", "request_id": "r1"},
    ),
    "GetSchedule": (("nightly",), {}),
    "ListSchedules": ((), {"pipeline": "churn"}),
    "UpdateSchedule": (("nightly",), {"every": "15m", "overlap_policy": "skip"}),
    "DeleteSchedule": (("nightly",), {"etag": "e1"}),
    "PauseSchedule": (("nightly",), {"note": "maintenance"}),
    "ResumeSchedule": (("schedules/nightly",), {}),
    "TriggerSchedule": (("nightly",), {"request_id": "t1"}),
    "BackfillSchedule": (
        ("nightly",),
        {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-01-02T00:00:00Z"},
    ),
}


class Recorder(grpc.GenericRpcHandler):
    """Answers every method of every service with an empty response and records the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._methods = {f"/{m.containing_service.full_name}/{m.name}": m for m in all_methods()}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = self._methods.get(details.method)  # type: ignore[attr-defined]
        if method is None:
            return None
        request_type = message_factory.GetMessageClass(method.input_type)

        def record(request: bytes) -> Any:
            parsed = request_type.FromString(request)
            self.calls.append((details.method, parsed))  # type: ignore[attr-defined]
            return parsed

        if method.server_streaming:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
                yield b""  # one empty response

            return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=record)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: b"", request_deserializer=record
        )


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, str]]:
    handler = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield handler, f"127.0.0.1:{port}"
    server.stop(0)


def drain(result: Any) -> None:
    """Run an SDK result far enough that its RPC is sent (pagers and streams are lazy)."""
    if isinstance(result, raypipe.PageIterator) or inspect.isgenerator(result):
        list(result)


async def adrain(result: Any) -> None:
    if inspect.isawaitable(result):
        await result
    elif isinstance(result, raypipe.AsyncPageIterator):
        await result.to_list()
    elif inspect.isasyncgen(result):
        async for _ in result:
            pass


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.full_name)
def test_each_wrapper_calls_its_rpc(method: Any, recorder: tuple[Recorder, str]) -> None:
    handler, address = recorder
    assert method.name in SAMPLE_ARGS, f"add sample arguments for {method.full_name}"
    args, kwargs = SAMPLE_ARGS[method.name]
    path = f"/{method.containing_service.full_name}/{method.name}"

    handler.calls.clear()
    with raypipe.Client(address, timeout=10) as client:
        drain(getattr(client, snake(method.name))(*args, **kwargs))
    assert [c[0] for c in handler.calls] == [path]
    sync_request = handler.calls[0][1]

    async def use_async() -> None:
        async with raypipe.AsyncClient(address, timeout=10) as client:
            await adrain(getattr(client, snake(method.name))(*args, **kwargs))

    handler.calls.clear()
    asyncio.run(use_async())
    assert [c[0] for c in handler.calls] == [path]
    async_request = handler.calls[0][1]
    for request in (sync_request, async_request):
        if hasattr(request, "request_id"):  # fresh per call, so not equal between the two
            request.ClearField("request_id")
    assert sync_request == async_request, "the sync and async clients send the same request"


def test_schedule_requests_carry_what_the_keywords_say(recorder: tuple[Recorder, str]) -> None:
    handler, address = recorder
    handler.calls.clear()
    with raypipe.Client(address) as client:
        client.create_schedule(
            "churn",
            version=3,
            every=dt.timedelta(minutes=15),
            parameters={"lr": 0.1},
            overlap_policy="buffer_one",
            catchup_policy="CATCHUP_POLICY_LATEST",
            jitter="30s",
            retry={"max_retries": 2, "initial_backoff": 5},
            start_time=dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC),
            schedule_id="churn-nightly",
        )
        client.update_schedule("nightly", cron="@hourly", max_runs=None, etag="e")
        with pytest.raises(ValueError, match="one trigger"):
            client.create_schedule("churn", cron="@daily", every="1h")
        with pytest.raises(ValueError, match="no time zone"):
            client.create_schedule("churn", at=dt.datetime(2025, 1, 1))
        with pytest.raises(TypeError, match="unknown fields: bogus"):
            client.update_schedule("nightly", bogus=1)
    created, updated = (call[1] for call in handler.calls)
    s = created.schedule
    assert created.schedule_id == "churn-nightly"
    assert created.request_id, "an idempotency key is always sent"
    assert s.pipeline_version == "pipelines/churn/versions/3"
    assert s.pipeline == "", "a pinned version alone names what runs"
    assert s.WhichOneof("trigger") == "interval"
    assert s.interval.every.seconds == 900
    assert s.parameters["lr"].number_value == 0.1
    assert s.overlap_policy == schedule_pb2.OVERLAP_POLICY_BUFFER_ONE
    assert s.catchup_policy == schedule_pb2.CATCHUP_POLICY_LATEST
    assert s.jitter.seconds == 30
    assert (s.retry.max_retries, s.retry.initial_backoff.seconds) == (2, 5)
    assert s.start_time.ToJsonString() == "2025-01-01T08:00:00Z"

    assert updated.schedule.name == "schedules/nightly"
    assert updated.schedule.etag == "e"
    assert updated.schedule.cron.expression == "@hourly"
    assert list(updated.update_mask.paths) == ["cron", "max_runs"]
