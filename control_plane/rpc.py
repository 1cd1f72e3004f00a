"""Turning the control plane's errors into gRPC statuses, in one place for every service."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc

from control_plane.errors import ApiError, InternalError, InvalidArgumentError, UnavailableError
from ray_nodes.errors import RayNodesError

log = logging.getLogger("raypipe.rpc")

F = TypeVar("F", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, error: ApiError) -> None:
    context.abort_with_status(rpc_status.to_status(error.to_status()))


def _internal(method: str, exc: BaseException) -> ApiError:
    """The status of an exception no service turned into an ApiError.

    A database that cannot be reached (or is busy past its timeout) is UNAVAILABLE, which
    clients retry; the driver's own message, which names hosts and ports, goes to the server
    log only. An error of ray_nodes about input (its ``ValueError`` or ``KeyError`` kinds:
    wiring, cycles, templates, paths, node types) is INVALID_ARGUMENT. Anything else is
    INTERNAL.
    """
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        log.warning("storage unavailable in %s: %s", method, exc)
        return UnavailableError(
            f"{method}: storage is unavailable right now; retry later",
            reason="STORAGE_UNAVAILABLE",
        )
    if isinstance(exc, RayNodesError) and isinstance(exc, ValueError | KeyError):
        # ray_nodes' errors about input (a spec's wiring or cycle, a template, a path, a node
        # type) that no check turned into field violations first: still the caller's input.
        log.warning("%s: %s reached the RPC layer: %s", method, type(exc).__name__, exc)
        return InvalidArgumentError(f"{method}: {exc}", reason="INVALID_ARGUMENT")
    log.exception("unexpected error in %s", method)
    return InternalError(
        f"internal error in {method}: {type(exc).__name__}: {exc}", reason="INTERNAL"
    )


def unary(fn: F) -> F:
    """Wrap a unary servicer method: ApiError -> its status; anything else -> INTERNAL."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except ApiError as e:
            _abort(context, e)
        except Exception as e:  # an unexpected failure must still answer with a status
            if context.code() is not None:  # already aborted (abort raises an Exception)
                raise
            _abort(context, _internal(fn.__name__, e))

    return wrapper  # type: ignore[return-value]


def streaming(fn: F) -> F:
    """Wrap a server-streaming servicer method the same way."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except ApiError as e:
            _abort(context, e)
        except Exception as e:
            if context.code() is not None:
                raise
            _abort(context, _internal(fn.__name__, e))

    return wrapper  # type: ignore[return-value]
