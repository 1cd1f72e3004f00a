"""The SDK's errors: one root, one class per gRPC status code, and run outcomes.

Every method of :class:`raypipe.Client` and :class:`raypipe.AsyncClient` raises a subclass of
:class:`RaypipeError`, never a raw ``grpc.RpcError``. A failed call becomes the
:class:`RPCError` subclass of its status code, carrying what the server packed into the
``google.rpc.Status`` of the ``grpc-status-details-bin`` trailer (AIP-193): the ``ErrorInfo``
reason, domain and metadata, and one :class:`FieldViolation` per problem of a ``BadRequest``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from raypipe.v1 import run_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


class RaypipeError(Exception):
    """Root of every error the raypipe SDK raises."""


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request (a ``google.rpc.BadRequest`` violation).

    Attributes:
        field: Path of the field, such as ``pipeline_version.spec.nodes[2].depends_on[0]``.
        description: What is wrong with it.
    """

    field: str
    description: str


class RPCError(RaypipeError):
    """A call to the control plane failed with a non-OK status.

    Catch a subclass (:class:`NotFoundError`, :class:`InvalidArgumentError`, ...) to handle
    one status code; catch this class to handle them all.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        reason: The ``ErrorInfo`` reason in UPPER_SNAKE_CASE, such as ``PIPELINE_NOT_FOUND``;
            empty when the status carried no ``ErrorInfo`` (for example a connection failure
            reported by the gRPC library itself).
        domain: The ``ErrorInfo`` domain, ``raypipe.dev`` for the raypipe control plane.
        metadata: The ``ErrorInfo`` metadata, read-only.
        field_violations: One entry per problem for bad input, in the server's order.
        details: Every detail of the status as packed ``Any`` messages, including kinds the
            SDK does not unpack (``RetryInfo``, ``DebugInfo``, ...).
    """

    #: The status code a subclass stands for; the base class accepts any.
    status_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        details: Iterable[any_pb2.Any] = (),
    ) -> None:
        resolved = code or self.status_code or grpc.StatusCode.UNKNOWN
        self.code: grpc.StatusCode = resolved
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.details: tuple[any_pb2.Any, ...] = tuple(details)
        super().__init__(self._summary())

    def _summary(self) -> str:
        head = f"{self.code.name}"
        if self.reason and self.reason != self.code.name:
            head += f" ({self.reason})"
        return f"{head}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, field_violations={list(self.field_violations)!r})"
        )


class CancelledError(RPCError):
    """The call was cancelled, usually by the caller (``CANCELLED``)."""

    status_code = grpc.StatusCode.CANCELLED


class UnknownError(RPCError):
    """The server or the transport reported an error without a known code (``UNKNOWN``)."""

    status_code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(RPCError):
    """The request was invalid; :attr:`field_violations` lists each problem."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(RPCError):
    """The call did not finish within its timeout (``DEADLINE_EXCEEDED``)."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(RPCError):
    """The named resource does not exist (``NOT_FOUND``)."""

    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(RPCError):
    """A resource with that name exists already (``ALREADY_EXISTS``)."""

    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(RPCError):
    """The caller may not do this (``PERMISSION_DENIED``)."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(RPCError):
    """A quota or a size limit was hit (``RESOURCE_EXHAUSTED``)."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(RPCError):
    """The resource is not in a state that allows the call (``FAILED_PRECONDITION``)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(RPCError):
    """A concurrent change got in the way; the call may be retried (``ABORTED``)."""

    status_code = grpc.StatusCode.ABORTED


class OutOfRangeError(RPCError):
    """A value was past the valid range (``OUT_OF_RANGE``)."""

    status_code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(RPCError):
    """The server does not implement the method, often an older server (``UNIMPLEMENTED``)."""

    status_code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(RPCError):
    """The server failed unexpectedly; a bug worth reporting (``INTERNAL``)."""

    status_code = grpc.StatusCode.INTERNAL


class UnavailableError(RPCError):
    """The server could not be reached or is shutting down; retrying may help
    (``UNAVAILABLE``)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DataLossError(RPCError):
    """Unrecoverable loss or corruption of data (``DATA_LOSS``)."""

    status_code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(RPCError):
    """The call carried no valid credentials (``UNAUTHENTICATED``)."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Mapping[grpc.StatusCode, type[RPCError]] = MappingProxyType(
    {
        cls.status_code: cls
        for cls in (
            CancelledError,
            UnknownError,
            InvalidArgumentError,
            DeadlineExceededError,
            NotFoundError,
            AlreadyExistsError,
            PermissionDeniedError,
            ResourceExhaustedError,
            FailedPreconditionError,
            AbortedError,
            OutOfRangeError,
            UnimplementedError,
            InternalError,
            UnavailableError,
            DataLossError,
            UnauthenticatedError,
        )
        if cls.status_code is not None
    }
)
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_class(code: grpc.StatusCode) -> type[RPCError]:
    """The :class:`RPCError` subclass raised for ``code`` (``RPCError`` itself for OK)."""
    return _BY_CODE.get(code, RPCError)


def error_from_status(status: status_pb2.Status) -> RPCError:
    """Build the typed error a ``google.rpc.Status`` stands for.

    Args:
        status: A status as servers put into the ``grpc-status-details-bin`` trailer.

    Returns:
        The :class:`RPCError` subclass of the status code, with the ``ErrorInfo`` and
        ``BadRequest`` details unpacked.
    """
    code = _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return error_class(code)(
        status.message,
        code=code,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        details=status.details,
    )


def error_from_rpc_error(error: grpc.RpcError) -> RPCError:
    """Translate a failed gRPC call (sync or ``grpc.aio``) into its typed error.

    Uses the rich ``google.rpc.Status`` of the trailers when there is one; otherwise (errors
    raised by the gRPC library itself, such as a refused connection) the call's code and
    details alone.

    Args:
        error: What a stub raised; a ``grpc.Call`` (sync) or ``grpc.aio.AioRpcError``.

    Returns:
        The :class:`RPCError` subclass of the call's status code.
    """
    # Both sync errors (grpc.Call) and grpc.aio.AioRpcError offer these as plain methods.
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    trailers_of = getattr(error, "trailing_metadata", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    message = (details_of() if callable(details_of) else None) or str(error)
    for key, value in (trailers_of() if callable(trailers_of) else None) or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            if status.code == code.value[0]:  # the trailer must describe this very failure
                return error_from_status(status)
    return error_class(code)(message, code=code)


class SpecError(RaypipeError, ValueError):
    """A pipeline spec (a YAML/JSON file, a dict, or builder input) could not be read.

    Attributes:
        source: The file or stream the spec came from; empty for in-memory input.
        path: JSON path of the offending element, such as ``nodes[1].retry.initialBackoff``;
            empty when the problem is with the document as a whole.
        line: 1-based line in ``source`` where the element starts; 0 when unknown.
        problem: What is wrong, without the location.
    """

    def __init__(self, problem: str, *, source: str = "", path: str = "", line: int = 0) -> None:
        self.source = source
        self.path = path
        self.line = line
        self.problem = problem
        where = source + (f":{line}" if source and line else "")
        prefix = ": ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class RunFailedError(RaypipeError):
    """A waited-for run ended FAILED or CANCELLED instead of SUCCEEDED.

    Attributes:
        run: The run in its terminal state, with every node's execution record.
    """

    def __init__(self, run: run_pb2.Run) -> None:
        self.run = run
        state = run.DESCRIPTOR.enum_types_by_name["State"].values_by_number[run.state].name
        text = f"run {run.name} ended {state.removeprefix('STATE_')}"
        if run.error.message:
            node = f" in node {run.error.node_id!r}" if run.error.node_id else ""
            text += f"{node}: {run.error.message}"
        super().__init__(text)


class WaitTimeoutError(RaypipeError, TimeoutError):
    """A wait for a run ran past its timeout; the run itself goes on.

    Attributes:
        run: The last state of the run seen before the timeout, or None if none was seen.
    """

    def __init__(self, message: str, run: run_pb2.Run | None = None) -> None:
        self.run = run
        super().__init__(message)
