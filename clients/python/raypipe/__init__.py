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
