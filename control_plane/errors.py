"""Errors of the control plane, each mapped to one canonical gRPC status code.

Services and storage raise these; the servicer layer turns them into a ``google.rpc.Status``
carrying an ``ErrorInfo`` (domain ``raypipe.dev``) and, for bad input, a ``BadRequest`` with
one field violation per problem (AIP-193).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "raypipe.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request, such as ``spec.nodes[3].depends_on[0]``."""

    field: str
    description: str


class ApiError(Exception):
    """Root of the control plane's errors. Subclasses fix the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})

    def to_status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` that carries this error over the wire."""
        details: list[any_pb2.Any] = []
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)
        info.metadata.update(self.metadata)
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=details
        )


class InvalidArgumentError(ApiError):
    """Bad input. Carries one FieldViolation per problem found."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def from_violations(
        cls, violations: Iterable[FieldViolation], *, reason: str = "INVALID_ARGUMENT"
    ) -> InvalidArgumentError:
        """One error listing every violation, its message summarising them all."""
        items = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in items[:5])
        if len(items) > 5:
            summary += f"; and {len(items) - 5} more"
        return cls(summary, reason=reason, violations=items)

    @classmethod
    def for_field(
        cls, field: str, description: str, *, reason: str = "INVALID_ARGUMENT"
    ) -> InvalidArgumentError:
        """An error about a single field."""
        return cls.from_violations([FieldViolation(field, description)], reason=reason)


class NotFoundError(ApiError):
    """The named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExistsError(ApiError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(ApiError):
    """The resource is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class AbortedError(ApiError):
    """A concurrent change got in the way (an etag mismatch, a lost race); retry."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class UnauthenticatedError(ApiError):
    """The call carries no credentials the server accepts (missing, malformed, expired, of
    another issuer or audience, unknown). The message never repeats the credential."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(ApiError):
    """The caller is known, but its role does not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhaustedError(ApiError):
    """A limit of the server was reached (a request's size, a caller's open streams)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class UnavailableError(ApiError):
    """A dependency (storage, the Ray cluster) cannot be reached right now; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class InternalError(ApiError):
    """Something unexpected; the message says what, the server log has the traceback."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"
