"""The synchronous client: one method per RPC of every service, plus a few conveniences.

Results are the API's protobuf messages themselves (``raypipe.v1``), so every field of the
contract is there without a translation layer; the SDK adds small frozen dataclasses only
where it adds meaning (:class:`~raypipe.Page`, :class:`~raypipe.ApplyResult`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from raypipe import _rpc as rpc
from raypipe._errors import (
    AlreadyExistsError,
    NotFoundError,
    error_from_rpc_error,
)
from raypipe._names import PipelineRef, VersionRef, pipeline_name, version_name
from raypipe._paging import Page, PageIterator
from raypipe._rpc import ApplyResult
from raypipe._run_methods import RunMethods
from raypipe._schedules import ScheduleMethods
from raypipe._specfile import SpecLike
from raypipe.v1 import (
    node_type_pb2,
    pipeline_pb2,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_service_pb2_grpc,
    schedule_service_pb2_grpc,
)

T = TypeVar("T")
_KEEP: Any = object()  # "leave as it is" for with_options


class Client(RunMethods, ScheduleMethods):
    """A connection to a raypipe control plane.

    .. code-block:: python

        with raypipe.Client("localhost:50051") as client:
            client.apply(pipeline)                      # create or update, idempotently
            run = client.run("churn", parameters={"lr": 0.05}).wait()
            print(run.nodes[-1].metrics)

    Every unary call carries the client's ``timeout`` and ``metadata``; streams
    (:meth:`watch`) run without a deadline unless given one. Failed calls raise the
    :class:`~raypipe.RPCError` subclass of their status code, never a raw ``grpc.RpcError``.

    Args:
        address: ``host:port`` of the control plane.
        timeout: Seconds each unary call may take; None for no deadline.
        metadata: gRPC metadata sent with every call, such as an authorization header.
        credentials: ``grpc.ChannelCredentials`` (``grpc.ssl_channel_credentials()``) for a
            TLS channel; None for plaintext.
        token: A bearer token for a server with authentication (docs/security.md), sent as
            ``authorization: Bearer TOKEN``; None reads ``RAYPIPE_TOKEN``, "" sends none.
        tls_ca: TLS to a server with ``--tls-cert``: the CA bundle (PEM) its certificate
            chains to; None reads ``RAYPIPE_TLS_CA`` (unset: plaintext, unless ``tls_cert``
            or ``credentials`` is given). The system's roots are used when it is "system".
        tls_cert: A client certificate (PEM) for mutual TLS; None reads ``RAYPIPE_TLS_CERT``.
        tls_key: Its private key (PEM); None reads ``RAYPIPE_TLS_KEY``.
        retries: How often a call that failed with UNAVAILABLE (server unreachable or
            restarting) is retried by gRPC, with exponential backoff; 0 disables.
        options: Extra gRPC channel options.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = 30.0,
        metadata: rpc.Metadata = (),
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        retries: int = 3,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = rpc.with_token(rpc.normalize_metadata(metadata), token)
        opts = rpc.channel_options(retries, options)
        credentials = credentials or rpc.tls_credentials(tls_ca, tls_cert, tls_key)
        if credentials is not None:
            self._channel = grpc.secure_channel(address, credentials, options=opts)
        else:
            self._channel = grpc.insecure_channel(address, options=opts)
        self._owns_channel = True
        self._pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self._channel)
        self._runs = run_service_pb2_grpc.RunServiceStub(self._channel)
        self._schedules = schedule_service_pb2_grpc.ScheduleServiceStub(self._channel)

    # --- plumbing ---------------------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise error_from_rpc_error(e) from e

    def _pages(
        self, method: Callable[..., Any], request: Any, field: str, page_token: str
    ) -> PageIterator[Any]:
        def fetch(token: str) -> Page[Any]:
            page_request = type(request)()
            page_request.CopyFrom(request)
            page_request.page_token = token
            response = self._unary(method, page_request)
            return Page(tuple(getattr(response, field)), response.next_page_token)

        return PageIterator(fetch, page_token)

    def with_options(
        self, *, timeout: float | None = _KEEP, metadata: rpc.Metadata = _KEEP
    ) -> Client:
        """A client on the same channel with another default timeout or metadata.

        Closing the returned client leaves the channel open; close the original.
        """
        other = copy.copy(self)
        other._owns_channel = False
        if timeout is not _KEEP:
            other.timeout = timeout
        if metadata is not _KEEP:
            other.metadata = rpc.normalize_metadata(metadata)
        return other

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"raypipe.Client({self.address!r})"

    # --- PipelineService --------------------------------------------------------------------

    def create_pipeline(
        self,
        pipeline_id: str,
        *,
        display_name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> pipeline_pb2.Pipeline:
        """Create a pipeline without versions (CreatePipeline).

        Args:
            pipeline_id: ``[a-z][a-z0-9-]{0,62}``, such as ``churn``.
            display_name: A human-readable name; defaults to the id.
            description: Free text.
            labels: Key/value labels for filtering.

        Raises:
            AlreadyExistsError: The id is taken.
            InvalidArgumentError: A malformed id or label, with field violations.
        """
        request = rpc.create_pipeline(
            pipeline_id, display_name=display_name, description=description, labels=labels
        )
        return self._unary(self._pipelines.CreatePipeline, request).pipeline

    def get_pipeline(self, pipeline: PipelineRef) -> pipeline_pb2.Pipeline:
        """Get a pipeline by id (``churn``) or name (``pipelines/churn``) (GetPipeline).

        Raises:
            NotFoundError: No such pipeline.
        """
        request = pipeline_service_pb2.GetPipelineRequest(name=pipeline_name(pipeline))
        return self._unary(self._pipelines.GetPipeline, request).pipeline

    def list_pipelines(
        self, *, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> PageIterator[pipeline_pb2.Pipeline]:
        """Iterate over pipelines, newest first, fetching pages as needed (ListPipelines).

        Args:
            filter: Label terms such as ``labels.team = "ml" AND labels.tier:*``.
            page_size: Pipelines per call; 0 for the server's default.
            page_token: Continue after a page obtained earlier.
        """
        request = pipeline_service_pb2.ListPipelinesRequest(filter=filter, page_size=page_size)
        return self._pages(self._pipelines.ListPipelines, request, "pipelines", page_token)

    def delete_pipeline(self, pipeline: PipelineRef, *, force: bool = False) -> None:
        """Delete a pipeline and its versions (DeletePipeline).

        Args:
            pipeline: The pipeline's id or name.
            force: Delete even while runs or schedules use it (their history is kept).

        Raises:
            NotFoundError: No such pipeline.
            FailedPreconditionError: Runs or schedules use it and ``force`` is not set.
        """
        request = pipeline_service_pb2.DeletePipelineRequest(
            name=pipeline_name(pipeline), force=force
        )
        self._unary(self._pipelines.DeletePipeline, request)

    def create_pipeline_version(
        self,
        pipeline: PipelineRef,
        spec: SpecLike,
        *,
        description: str = "",
        keep_default_version: bool = False,
    ) -> pipeline_pb2.PipelineVersion:
        """Validate a spec and store it as the pipeline's next version (CreatePipelineVersion).

        Args:
            pipeline: The pipeline's id or name.
            spec: A PipelineSpec, a :class:`raypipe.Pipeline` builder, or the spec's JSON
                mapping as a dict.
            description: A change note.
            keep_default_version: Leave the default version as it is; by default the new
                version becomes the default.

        Raises:
            InvalidArgumentError: The spec is invalid; ``field_violations`` names each
                problem, such as ``pipeline_version.spec.nodes[1].depends_on[0]``.
            NotFoundError: No such pipeline.
        """
        request = rpc.create_pipeline_version(
            pipeline, spec, description=description, keep_default_version=keep_default_version
        )
        return self._unary(self._pipelines.CreatePipelineVersion, request).pipeline_version

    def get_pipeline_version(
        self, pipeline: PipelineRef, version: VersionRef | None = None
    ) -> pipeline_pb2.PipelineVersion:
        """Get one version with its spec (GetPipelineVersion).

        ``get_pipeline_version("churn", 3)``,
        ``get_pipeline_version("pipelines/churn/versions/3")``, or
        ``get_pipeline_version("churn")`` for the pipeline's default version (one more call).

        Raises:
            NotFoundError: No such pipeline or version, or the pipeline has no version yet.
        """
        if version is None:
            name = rpc.version_in(pipeline)
            if not name:
                name = self.get_pipeline(pipeline).default_version
                if not name:
                    raise NotFoundError(
                        f"pipeline {pipeline_name(pipeline)} has no version yet",
                        reason="PIPELINE_HAS_NO_VERSION",
                    )
        else:
            name = version_name(pipeline, version)
        request = pipeline_service_pb2.GetPipelineVersionRequest(name=name)
        return self._unary(self._pipelines.GetPipelineVersion, request).pipeline_version

    def list_pipeline_versions(
        self,
        pipeline: PipelineRef,
        *,
        omit_spec: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> PageIterator[pipeline_pb2.PipelineVersion]:
        """Iterate over a pipeline's versions, newest first (ListPipelineVersions).

        Args:
            pipeline: The pipeline's id or name.
            omit_spec: Leave out the specs (only their digests), for a much smaller answer.
            page_size: Versions per call; 0 for the server's default.
            page_token: Continue after a page obtained earlier.
        """
        request = pipeline_service_pb2.ListPipelineVersionsRequest(
            parent=pipeline_name(pipeline), omit_spec=omit_spec, page_size=page_size
        )
        return self._pages(
            self._pipelines.ListPipelineVersions, request, "pipeline_versions", page_token
        )

    def rollback_pipeline(
        self, pipeline: PipelineRef, version: VersionRef
    ) -> pipeline_pb2.Pipeline:
        """Make an existing version the pipeline's default again (RollbackPipeline).

        Args:
            pipeline: The pipeline's id or name.
            version: The version's number or name.

        Returns:
            The pipeline with its new ``default_version``.
        """
        request = pipeline_service_pb2.RollbackPipelineRequest(
            name=pipeline_name(pipeline), version=version_name(pipeline, version)
        )
        return self._unary(self._pipelines.RollbackPipeline, request).pipeline

    def validate_pipeline_spec(
        self, spec: SpecLike
    ) -> pipeline_service_pb2.ValidatePipelineSpecResponse:
        """Check a spec without storing it (ValidatePipelineSpec).

        Returns:
            The nodes' ``topological_order`` and the ``spec_digest`` a version would get.

        Raises:
            InvalidArgumentError: The same violations as :meth:`create_pipeline_version`,
                with fields under ``spec.``.
        """
        request = rpc.validate_pipeline_spec(spec)
        return self._unary(self._pipelines.ValidatePipelineSpec, request)

    def list_node_types(self) -> list[node_type_pb2.NodeType]:
        """Every registered node type with its parameter schema (ListNodeTypes)."""
        request = pipeline_service_pb2.ListNodeTypesRequest()
        return list(self._unary(self._pipelines.ListNodeTypes, request).node_types)

    def apply(
        self,
        spec: SpecLike,
        *,
        pipeline: PipelineRef | None = None,
        description: str = "",
        display_name: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> ApplyResult:
        """Make ``spec`` the pipeline's default version, creating only what is missing.

        Creates the pipeline if it does not exist, and a new version only if the spec's
        digest (as the server computes it) differs from the default version's, so applying
        the same file twice is a no-op.

        Args:
            spec: A builder, a PipelineSpec or a dict.
            pipeline: The pipeline id; by default a builder's name.
            description: The new version's change note.
            display_name: The display name if the pipeline is created.
            labels: The labels if the pipeline is created.

        Raises:
            InvalidArgumentError: The spec is invalid (violations under ``spec.``).
        """
        pipeline_id = rpc.apply_pipeline_id(spec, pipeline)
        # Validate first, so that a bad spec leaves no empty pipeline behind.
        digest = self.validate_pipeline_spec(spec).spec_digest
        pipeline_created = False
        try:
            current = self.get_pipeline(pipeline_id)
        except NotFoundError:
            try:
                current = self.create_pipeline(
                    pipeline_id, display_name=display_name, labels=labels
                )
                pipeline_created = True
            except AlreadyExistsError:  # created concurrently; use theirs
                current = self.get_pipeline(pipeline_id)
        if current.default_version:
            default = self.get_pipeline_version(current.default_version)
            if default.spec_digest == digest:
                return ApplyResult(current, default, pipeline_created, False)
        version = self.create_pipeline_version(pipeline_id, spec, description=description)
        return ApplyResult(self.get_pipeline(pipeline_id), version, pipeline_created, True)
