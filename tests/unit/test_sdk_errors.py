"""Typed errors: a google.rpc.Status (as servers send it) becomes the right RPCError subclass
with its ErrorInfo and BadRequest unpacked; failed calls on a real gRPC server do too."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import raypipe
from raypipe.v1 import (
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
)


def packed(message: object) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(message)  # type: ignore[arg-type]
    return a


def invalid_spec_status() -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message="spec.nodes[1].depends_on[0]: cycle: a -> b -> a",
        details=[
            packed(
                error_details_pb2.ErrorInfo(
                    reason="INVALID_PIPELINE_SPEC", domain="raypipe.dev", metadata={"nodes": "2"}
                )
            ),
            packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="spec.nodes[1].depends_on[0]", description="cycle: a -> b -> a"
                        ),
                        error_details_pb2.BadRequest.FieldViolation(
                            field="spec.nodes[2].type", description="unknown node type 'nope'"
                        ),
                    ]
                )
            ),
            packed(error_details_pb2.RetryInfo()),
        ],
    )


def test_status_is_unpacked() -> None:
    error = raypipe.error_from_status(invalid_spec_status())
    assert type(error) is raypipe.InvalidArgumentError
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PIPELINE_SPEC"
    assert error.domain == "raypipe.dev"
    assert dict(error.metadata) == {"nodes": "2"}
    assert error.field_violations == (
        raypipe.FieldViolation("spec.nodes[1].depends_on[0]", "cycle: a -> b -> a"),
        raypipe.FieldViolation("spec.nodes[2].type", "unknown node type 'nope'"),
    )
    assert len(error.details) == 3, "details the SDK does not unpack are kept"
    assert error.message == "spec.nodes[1].depends_on[0]: cycle: a -> b -> a"
    assert "INVALID_ARGUMENT (INVALID_PIPELINE_SPEC)" in str(error)
    assert isinstance(error, raypipe.RPCError)
    assert isinstance(error, raypipe.RaypipeError)


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
def test_every_code_has_its_class(code: grpc.StatusCode) -> None:
    # Before `error.code is code` narrows `code` to the type of `error.code` (Optional).
    camel = "".join(part.title() for part in code.name.split("_")) + "Error"
    error = raypipe.error_from_status(status_pb2.Status(code=code.value[0], message="m"))
    assert type(error) is not raypipe.RPCError, f"no RPCError subclass for {code.name}"
    assert error.code is code
    assert type(error).status_code is code
    assert error.reason == ""
    assert error.field_violations == ()
    assert type(error).__name__ == camel
    assert getattr(raypipe, camel) is type(error), f"raypipe.{camel} is not exported"


def test_subclass_fixes_its_code() -> None:
    error = raypipe.NotFoundError("gone")
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == "gone"


def test_run_failed_error_names_the_node() -> None:
    run = run_pb2.Run(
        name="runs/abc",
        state=run_pb2.Run.STATE_FAILED,
        error=run_pb2.ExecutionError(node_id="train", message="boom"),
    )
    error = raypipe.RunFailedError(run)
    assert str(error) == "run runs/abc ended FAILED in node 'train': boom"
    assert error.run is run


# --- through a real server -----------------------------------------------------------------


class Failing(pipeline_service_pb2_grpc.PipelineServiceServicer):
    """Aborts as the raypipe servers do: with a rich status; or without one."""

    def ValidatePipelineSpec(self, request, context):  # type: ignore[no-untyped-def]
        context.abort_with_status(rpc_status.to_status(invalid_spec_status()))

    def GetPipeline(self, request, context):  # type: ignore[no-untyped-def]
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no access to {request.name}")

    def ListNodeTypes(self, request, context):  # type: ignore[no-untyped-def]
        metadata = dict(context.invocation_metadata())
        return pipeline_service_pb2.ListNodeTypesResponse(
            node_types=[{"type": metadata.get("x-team", ""), "description": metadata.get("x-c")}]
        )


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(Failing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_rich_status_from_a_real_call(address: str) -> None:
    with raypipe.Client(address) as client, pytest.raises(raypipe.InvalidArgumentError) as info:
        client.validate_pipeline_spec({"nodes": []})
    assert info.value.reason == "INVALID_PIPELINE_SPEC"
    assert [v.field for v in info.value.field_violations] == [
        "spec.nodes[1].depends_on[0]",
        "spec.nodes[2].type",
    ]
    assert isinstance(info.value.__cause__, grpc.RpcError), "the grpc error stays as the cause"


def test_plain_status_from_a_real_call(address: str) -> None:
    with raypipe.Client(address) as client, pytest.raises(raypipe.PermissionDeniedError) as info:
        client.get_pipeline("churn")
    assert info.value.message == "no access to pipelines/churn"
    assert info.value.reason == ""


def test_async_client_raises_the_same(address: str) -> None:
    import asyncio

    async def call() -> None:
        async with raypipe.AsyncClient(address) as client:
            await client.validate_pipeline_spec({"nodes": []})

    with pytest.raises(raypipe.InvalidArgumentError) as info:
        asyncio.run(call())
    assert len(info.value.field_violations) == 2


def test_unimplemented_method(address: str) -> None:
    with raypipe.Client(address) as client, pytest.raises(raypipe.UnimplementedError):
        client.get_run("abc")


def test_metadata_is_sent_with_every_call(address: str) -> None:
    with raypipe.Client(address, metadata={"X-Team": "ml"}) as client:
        assert client.list_node_types()[0].type == "ml"
        scoped = client.with_options(metadata=[("x-team", "ops"), ("x-c", "1")])
        node_type = scoped.list_node_types()[0]
        assert (node_type.type, node_type.description) == ("ops", "1")
        assert client.list_node_types()[0].type == "ml", "the original keeps its metadata"


def test_unreachable_server_is_unavailable() -> None:
    with (
        socket_that_refuses() as addr,
        raypipe.Client(addr, retries=1, timeout=5) as client,
        pytest.raises(raypipe.UnavailableError) as info,
    ):
        client.list_node_types()
    assert info.value.code is grpc.StatusCode.UNAVAILABLE


class socket_that_refuses:
    """An address nothing listens on: a port bound, never listened on, closed afterwards."""

    def __enter__(self) -> str:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
