"""What the server's gRPC interceptors share: each wraps a method's handler once, the first
time the method is called, and keeps the wrapped handler for every later call."""

from __future__ import annotations

from collections.abc import Callable

import grpc


class HandlerWrapper(grpc.ServerInterceptor):  # type: ignore[misc]
    """An interceptor that replaces each method's handler by ``wrap(method, handler)``."""

    def __init__(self) -> None:
        # The registered handlers never change, so one wrapped handler per method serves all.
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method in self._handlers:
            return self._handlers[method]
        handler = continuation(handler_call_details)
        wrapped = None if handler is None else self.wrap(method, handler)
        self._handlers[method] = wrapped
        return wrapped
