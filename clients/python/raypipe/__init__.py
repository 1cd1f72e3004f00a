"""raypipe: ML pipelines on Ray with a gRPC control plane.

The Python SDK. :class:`Client` (and :class:`AsyncClient` for asyncio) wraps every RPC of
the control plane's services and returns the API's protobuf messages (``raypipe.v1``);
:class:`Pipeline` builds a pipeline's DAG in Python; :func:`load_spec` and :func:`dump_spec`
read and write YAML/JSON pipeline files. Every error the SDK raises derives from
:class:`RaypipeError`; failed calls raise the :class:`RPCError` subclass of their status code.

.. code-block:: python

    import raypipe

    p = raypipe.Pipeline("demo")
    p.add("start", "noop")
    p.add("left", "noop", depends_on=["start"])
    p.add("right", "noop", depends_on=["start"])
    p.add("join", "noop", depends_on=["left", "right"])

    with raypipe.Client("localhost:50051") as client:
        client.apply(p)
        run = client.run("demo").wait()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raypipe._aio import AsyncClient
    from raypipe._builder import Pipeline
    from raypipe._client import Client
    from raypipe._errors import (
        AbortedError,
        AlreadyExistsError,
        CancelledError,
        DataLossError,
        DeadlineExceededError,
        FailedPreconditionError,
        FieldViolation,
        InternalError,
        InvalidArgumentError,
        NotFoundError,
        OutOfRangeError,
        PermissionDeniedError,
        RaypipeError,
        ResourceExhaustedError,
        RPCError,
        RunFailedError,
        SpecError,
        UnauthenticatedError,
        UnavailableError,
        UnimplementedError,
        UnknownError,
        WaitTimeoutError,
        error_from_rpc_error,
        error_from_status,
    )
    from raypipe._handles import AsyncRunHandle, RunHandle
    from raypipe._paging import AsyncPageIterator, Page, PageIterator
    from raypipe._rpc import ApplyResult
    from raypipe._specfile import (
        dump_spec,
        dumps_spec,
        load_spec,
        loads_spec,
        spec_from_dict,
        spec_to_dict,
    )

# Names are imported on first use (PEP 562): importing the generated messages
# (``raypipe.v1``), as Ray workers and the engine do, then costs no gRPC client machinery.
_EXPORTS: dict[str, str] = {
    "AbortedError": "raypipe._errors",
    "AlreadyExistsError": "raypipe._errors",
    "ApplyResult": "raypipe._rpc",
    "AsyncClient": "raypipe._aio",
    "AsyncPageIterator": "raypipe._paging",
    "AsyncRunHandle": "raypipe._handles",
    "CancelledError": "raypipe._errors",
    "Client": "raypipe._client",
    "DataLossError": "raypipe._errors",
    "DeadlineExceededError": "raypipe._errors",
    "dump_spec": "raypipe._specfile",
    "dumps_spec": "raypipe._specfile",
    "error_from_rpc_error": "raypipe._errors",
    "error_from_status": "raypipe._errors",
    "FailedPreconditionError": "raypipe._errors",
    "FieldViolation": "raypipe._errors",
    "InternalError": "raypipe._errors",
    "InvalidArgumentError": "raypipe._errors",
    "load_spec": "raypipe._specfile",
    "loads_spec": "raypipe._specfile",
    "NotFoundError": "raypipe._errors",
    "OutOfRangeError": "raypipe._errors",
    "Page": "raypipe._paging",
    "PageIterator": "raypipe._paging",
    "PermissionDeniedError": "raypipe._errors",
    "Pipeline": "raypipe._builder",
    "RaypipeError": "raypipe._errors",
    "ResourceExhaustedError": "raypipe._errors",
    "RPCError": "raypipe._errors",
    "RunFailedError": "raypipe._errors",
    "RunHandle": "raypipe._handles",
    "spec_from_dict": "raypipe._specfile",
    "spec_to_dict": "raypipe._specfile",
    "SpecError": "raypipe._errors",
    "UnauthenticatedError": "raypipe._errors",
    "UnavailableError": "raypipe._errors",
    "UnimplementedError": "raypipe._errors",
    "UnknownError": "raypipe._errors",
    "WaitTimeoutError": "raypipe._errors",
}

__all__ = [
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
]
assert set(__all__) == set(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raypipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
