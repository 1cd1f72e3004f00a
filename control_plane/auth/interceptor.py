"""The gRPC side of the authorizer: one server interceptor for every service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from control_plane.auth.authorizer import Authorizer, current_principal
from control_plane.auth.credentials import Principal
from control_plane.auth.limits import StreamLimiter
from control_plane.auth.tls import peer_identity
from control_plane.errors import ApiError, InvalidArgumentError
from control_plane.interceptors import HandlerWrapper


class _Malformed:
    """A request whose bytes are not a message of its type (gRPC would answer INTERNAL)."""

    def __init__(self, error: str) -> None:
        self.error = error


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def read(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # any decoding failure is the caller's malformed request
            return _Malformed(f"{type(exc).__name__}: {exc}")

    return read


def _authorization(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


class AuthInterceptor(HandlerWrapper):
    """Checks every call with the Authorizer before its servicer runs (the request is read
    first, since a rule may depend on it) and makes the caller the call's
    :data:`~control_plane.auth.authorizer.current_principal`. A request that does not decode
    as its message is INVALID_ARGUMENT (reason MALFORMED_REQUEST), not gRPC's INTERNAL."""

    def __init__(self, authorizer: Authorizer, streams: StreamLimiter | None = None) -> None:
        super().__init__()
        self.authorizer = authorizer
        self.streams = streams or StreamLimiter(0)

    def _check(self, method: str, context: grpc.ServicerContext, request: Any) -> Principal:
        if isinstance(request, _Malformed):
            error = InvalidArgumentError(
                f"the request is not a valid message for {method}: {request.error}",
                reason="MALFORMED_REQUEST",
            )
            context.abort_with_status(rpc_status.to_status(error.to_status()))
        try:
            peer = peer_identity(context.auth_context() or {})
            principal = self.authorizer.authorize(method, _authorization(context), request, peer)
        except ApiError as exc:
            context.abort_with_status(rpc_status.to_status(exc.to_status()))
        current_principal.set(principal)
        return principal

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        serializers = {
            "request_deserializer": _safe(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        check = self._check
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                check(method, context, request)
                return inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **serializers)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            streams = self.streams

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                principal = check(method, context, request)
                try:
                    streams.acquire(principal, method)
                except ApiError as exc:
                    context.abort_with_status(rpc_status.to_status(exc.to_status()))
                try:
                    yield from inner_us(request, context)
                finally:
                    streams.release(principal)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **serializers)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                check(method, context, None)
                return inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **serializers)
        inner_ss = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            check(method, context, None)
            yield from inner_ss(requests, context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **serializers)
