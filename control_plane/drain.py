"""Draining on shutdown: new calls get UNAVAILABLE while the calls in flight finish.

gRPC's own ``server.stop(grace)`` closes the listener and lets calls in flight finish, but a
call that reaches the server in the moment it stops is cancelled (``CANCELLED``), which
clients do not retry. So the control plane drains first: ``DrainGate`` counts the calls of
raypipe's services in flight, and once ``drain()`` has been called it answers every new one
with ``UNAVAILABLE`` (reason ``SHUTTING_DOWN``), which the SDK and any gRPC retry policy
retry, on this server after a restart or on another replica. The health service and
reflection are not gated: probes keep reading ``NOT_SERVING`` until the server is gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from control_plane.errors import UnavailableError

_SHUTTING_DOWN = rpc_status.to_status(
    UnavailableError(
        "the server is shutting down; retry the call", reason="SHUTTING_DOWN"
    ).to_status()
)


class DrainGate(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts the calls in flight of the services named (full names, such as
    ``raypipe.v1.PipelineService``), and refuses new ones once draining."""

    def __init__(self, services: tuple[str, ...]) -> None:
        self._prefixes = tuple(f"/{p}/" for p in services)
        self._changed = threading.Condition()
        self._active = 0
        self._draining = False
        # One wrapped handler per method: the registered handlers do not change.
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    @property
    def active(self) -> int:
        """How many gated calls are in flight."""
        with self._changed:
            return self._active

    def drain(self, timeout: float) -> bool:
        """Refuse new calls from now on and wait up to ``timeout`` seconds for those in
        flight to end; True when they all have."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._draining = True
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def enter(self) -> bool:
        """Count a call of another transport (the HTTP port) in; False once draining. Each
        call that entered must :meth:`leave`."""
        return self._enter()

    def leave(self) -> None:
        """Count a call of another transport out."""
        self._leave()

    def _enter(self) -> bool:
        with self._changed:
            if self._draining:
                return False
            self._active += 1
            return True

    def _admit(self, context: grpc.ServicerContext) -> None:
        """Count the call in, or refuse it. It is counted out when gRPC has terminated it:
        its status sent (not merely returned by the servicer, since a server that stopped
        the moment its servicers returned could reset connections before the responses
        left), or the client gone."""
        if not self._enter():
            context.abort_with_status(_SHUTTING_DOWN)
        if not context.add_callback(self._leave):
            self._leave()  # the call has terminated already

    def _leave(self) -> None:
        with self._changed:
            self._active -= 1
            if not self._active:
                self._changed.notify_all()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        try:
            return self._handlers[method]
        except KeyError:
            pass
        handler = continuation(handler_call_details)
        if handler is not None and method.startswith(self._prefixes):
            handler = self._gated(handler)
        self._handlers[method] = handler
        return handler

    def _gated(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary), **serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary), **serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream), **serializers
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream(handler.stream_stream), **serializers
        )

    def _unary(self, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def gated(request: Any, context: grpc.ServicerContext) -> Any:
            self._admit(context)
            return behavior(request, context)

        return gated

    def _stream(
        self, behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[..., Iterator[Any]]:
        def gated(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._admit(context)
            yield from behavior(request, context)

        return gated
