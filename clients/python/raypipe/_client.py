"""The synchronous client: one method per RPC of every service, plus a few conveniences.

Results are the API's protobuf messages themselves (``raypipe.v1``), so every field of the
contract is there without a translation layer; the SDK adds small frozen dataclasses only
where it adds meaning (:class:`~raypipe.Page`, :class:`~raypipe.ApplyResult`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from raypipe import _rpc as rpc
from raypipe._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    NotFoundError,
    UnavailableError,
    error_from_rpc_error,
)
from raypipe._handles import RunHandle
from raypipe._names import PipelineRef, RunRef, VersionRef, pipeline_name, run_name, version_name
from raypipe._paging import Page, PageIterator
from raypipe._rpc import ApplyResult
from raypipe._schedules import ScheduleMethods
from raypipe._specfile import SpecLike
from raypipe.v1 import (
    node_type_pb2,
    pipeline_pb2,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    schedule_service_pb2_grpc,
)

T = TypeVar("T")
_KEEP: Any = object()  # "leave as it is" for with_options


class Client(ScheduleMethods):
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
        retries: int = 3,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = rpc.normalize_metadata(metadata)
        opts = rpc.channel_options(retries, options)
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

    # --- RunService -------------------------------------------------------------------------

    def create_run(
        self,
        pipeline: PipelineRef | None = None,
        *,
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        display_name: str = "",
        request_id: str | None = None,
    ) -> run_pb2.Run:
        """Start a run (CreateRun); :meth:`run` does the same and returns a handle.

        Args:
            pipeline: The pipeline; its default version runs unless ``version`` is given.
            version: A version number (with ``pipeline``) or a version name.
            parameters: Values of the spec's run-time parameters (JSON values).
            labels: Key/value labels.
            display_name: A name for displays.
            request_id: Idempotency key: the same id twice yields the same run. Default: a
                fresh UUID, which gRPC's retries of this call reuse.

        Raises:
            FailedPreconditionError: The pipeline has no version yet.
            InvalidArgumentError: An undeclared parameter, a malformed name, ...
        """
        request = rpc.create_run(
            pipeline,
            version=version,
            parameters=parameters,
            labels=labels,
            display_name=display_name,
            request_id=request_id,
        )
        return self._unary(self._runs.CreateRun, request).run

    def get_run(self, run: RunRef) -> run_pb2.Run:
        """Get a run with every node's execution record (GetRun)."""
        request = run_service_pb2.GetRunRequest(name=run_name(run))
        return self._unary(self._runs.GetRun, request).run

    def list_runs(
        self,
        *,
        pipeline: PipelineRef | None = None,
        version: VersionRef | None = None,
        states: Iterable[int | str] = (),
        schedule: str = "",
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> PageIterator[run_pb2.Run]:
        """Iterate over runs, newest first (ListRuns).

        Args:
            pipeline: Only runs of this pipeline.
            version: Only runs of this version (a number with ``pipeline``, or a name).
            states: Only runs in these states: ``Run.STATE_RUNNING`` or names such as
                ``"running"``.
            schedule: Only runs started by this schedule.
            filter: Label terms, as in :meth:`list_pipelines`.
            page_size: Runs per call; 0 for the server's default.
            page_token: Continue after a page obtained earlier.
        """
        request = rpc.list_runs(
            pipeline=pipeline,
            version=version,
            states=states,
            schedule=schedule,
            filter=filter,
            page_size=page_size,
        )
        return self._pages(self._runs.ListRuns, request, "runs", page_token)

    def cancel_run(self, run: RunRef) -> run_pb2.Run:
        """Cancel a run; it goes CANCELLING, then CANCELLED (CancelRun).

        Raises:
            FailedPreconditionError: The run has ended already.
        """
        request = run_service_pb2.CancelRunRequest(name=run_name(run))
        return self._unary(self._runs.CancelRun, request).run

    def retry_run(self, run: RunRef, *, request_id: str | None = None) -> run_pb2.Run:
        """Start a new run of an ended run's version and parameters that reuses the outputs
        of its succeeded nodes (RetryRun).

        Returns:
            The new run; its ``retry_of`` names the original.
        """
        request = run_service_pb2.RetryRunRequest(
            name=run_name(run), request_id=request_id or rpc.new_request_id()
        )
        return self._unary(self._runs.RetryRun, request).run

    def watch_run(
        self,
        run: RunRef,
        *,
        timeout: float | None = None,
        event_types: Sequence[run_pb2.RunEvent.Type] = (),
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        """Stream a run's events: a snapshot first, then every change until the run ends
        (WatchRun).

        Each response holds the ``event``, and the whole ``run`` as of that event on the
        snapshot, on run-state changes and on the last event of each batch the server sends.
        Closing the iterator (or leaving a ``for`` loop early) cancels the stream.

        Args:
            run: The run's id or name, a Run message or a handle.
            timeout: Seconds the whole stream may last; None for no limit.
            event_types: Only events of these types after the snapshot, such as
                ``[RunEvent.TYPE_RUN_STATE_CHANGED]`` to follow the run but not its nodes;
                empty for every event. The stream still ends when the run does.
        """
        request = run_service_pb2.WatchRunRequest(name=run_name(run), event_types=event_types)
        try:
            call = self._runs.WatchRun(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise error_from_rpc_error(e) from e
        return _stream(call)

    def watch(
        self, run: RunRef, *, timeout: float | None = None
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        """Follow a run's events until it ends: ``for r in client.watch(run): ...`` (WatchRun).

        The documented spelling of :meth:`watch_run`, the same stream: a snapshot first, then
        every change, each response with its ``event`` and the whole ``run``. Given a
        :class:`~raypipe.RunHandle`, the handle's ``last`` follows the stream too.

        Args:
            run: The run's id or name, a Run message or a handle.
            timeout: Seconds the whole stream may last; None for no limit.
        """
        if isinstance(run, RunHandle):
            return run.watch(timeout=timeout)
        return self.watch_run(run, timeout=timeout)

    def wait_run(
        self,
        run: RunRef,
        *,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        on_event: Callable[[run_service_pb2.WatchRunResponse], object] | None = None,
    ) -> run_pb2.Run:
        """Block until a run ends, following it with WatchRun.

        A stream broken by UNAVAILABLE (a server restart, a network blip) is reopened with
        backoff; the server replays the run's current state, so nothing is missed.

        Without ``on_event`` it asks the server for run-state changes only, so a large run
        does not stream thousands of node events to a caller that only wants the outcome.

        Args:
            run: The run's id or name, a Run message or a handle.
            timeout: Seconds to wait at most; None for no limit.
            raise_on_failure: Raise :class:`~raypipe.RunFailedError` if the run ends FAILED
                or CANCELLED; otherwise return it whatever its state.
            on_event: Called with every WatchRunResponse as it arrives, to show progress;
                after a reconnect it sees the server's fresh snapshot.

        Returns:
            The run in its terminal state.

        Raises:
            RunFailedError: The run did not succeed and ``raise_on_failure`` is set.
            WaitTimeoutError: ``timeout`` passed first; the run goes on.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: run_pb2.Run | None = None
        backoff = rpc.Backoff()
        types = () if on_event is not None else rpc.OUTCOME_EVENTS
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise rpc.wait_timeout(run, timeout, last)
            try:
                for response in self.watch_run(run, timeout=remaining, event_types=types):
                    if response.HasField("run"):
                        last = response.run
                    backoff.reset()
                    if on_event is not None:
                        on_event(response)
                    if last is not None and last.state in rpc.TERMINAL_STATES:
                        return rpc.outcome(last, raise_on_failure)
            except UnavailableError:
                pass  # reconnect below
            except DeadlineExceededError:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise rpc.wait_timeout(run, timeout, last) from None
                raise
            delay = backoff.next()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)

    def run(
        self,
        pipeline: PipelineRef | None = None,
        *,
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        display_name: str = "",
        request_id: str | None = None,
    ) -> RunHandle:
        """Start a run, as :meth:`create_run`, and return a handle to follow it.

        ``client.run("churn").wait()`` runs the default version and returns the finished
        Run, raising :class:`~raypipe.RunFailedError` if it failed.
        """
        created = self.create_run(
            pipeline,
            version=version,
            parameters=parameters,
            labels=labels,
            display_name=display_name,
            request_id=request_id,
        )
        return RunHandle(self, created)

    def get_run_handle(self, run: RunRef) -> RunHandle:
        """A handle on an existing run; makes no call."""
        return RunHandle(self, run)


def _stream(call: Any) -> Iterator[Any]:
    try:
        yield from call
    except grpc.RpcError as e:
        raise error_from_rpc_error(e) from e
    finally:
        call.cancel()  # a no-op once the stream has ended; stops it when the caller leaves
