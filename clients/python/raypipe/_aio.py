"""The asyncio client (``grpc.aio``): the same methods as :class:`raypipe.Client`, as coroutines.

List methods return an :class:`~raypipe.AsyncPageIterator` (``async for``) and
:meth:`AsyncClient.watch_run` an async iterator; everything else is awaited. Create the
client inside the event loop that uses it.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from raypipe import _rpc as rpc
from raypipe._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    NotFoundError,
    UnavailableError,
    error_from_rpc_error,
)
from raypipe._handles import AsyncRunHandle
from raypipe._names import PipelineRef, RunRef, VersionRef, pipeline_name, run_name, version_name
from raypipe._paging import AsyncPageIterator, Page
from raypipe._rpc import ApplyResult
from raypipe._run_methods import last_attempt, node_log_name
from raypipe._schedules import AsyncScheduleMethods
from raypipe._specfile import SpecLike
from raypipe.v1 import (
    node_log_pb2,
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
_KEEP: Any = object()


class AsyncClient(AsyncScheduleMethods):
    """An asyncio connection to a raypipe control plane; see :class:`raypipe.Client`.

    .. code-block:: python

        async with raypipe.AsyncClient("localhost:50051") as client:
            run = await (await client.run("churn")).wait()
            async for pipeline in client.list_pipelines():
                print(pipeline.name)

    Args:
        address: ``host:port`` of the control plane.
        timeout: Seconds each unary call may take; None for no deadline.
        metadata: gRPC metadata sent with every call.
        credentials: ``grpc.ChannelCredentials`` for a TLS channel; None for plaintext.
        retries: How often gRPC retries a call that failed with UNAVAILABLE; 0 disables.
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
            self._channel = grpc.aio.secure_channel(address, credentials, options=opts)
        else:
            self._channel = grpc.aio.insecure_channel(address, options=opts)
        self._owns_channel = True
        self._pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self._channel)
        self._runs = run_service_pb2_grpc.RunServiceStub(self._channel)
        self._schedules = schedule_service_pb2_grpc.ScheduleServiceStub(self._channel)

    # --- plumbing ---------------------------------------------------------------------------

    async def _unary(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:  # grpc.aio.AioRpcError derives from it
            raise error_from_rpc_error(e) from e

    def _pages(
        self, method: Callable[..., Any], request: Any, field: str, page_token: str
    ) -> AsyncPageIterator[Any]:
        async def fetch(token: str) -> Page[Any]:
            page_request = type(request)()
            page_request.CopyFrom(request)
            page_request.page_token = token
            response = await self._unary(method, page_request)
            return Page(tuple(getattr(response, field)), response.next_page_token)

        return AsyncPageIterator(fetch, page_token)

    def with_options(
        self, *, timeout: float | None = _KEEP, metadata: rpc.Metadata = _KEEP
    ) -> AsyncClient:
        """A client on the same channel with another default timeout or metadata."""
        other = copy.copy(self)
        other._owns_channel = False
        if timeout is not _KEEP:
            other.timeout = timeout
        if metadata is not _KEEP:
            other.metadata = rpc.normalize_metadata(metadata)
        return other

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"raypipe.AsyncClient({self.address!r})"

    # --- PipelineService --------------------------------------------------------------------

    async def create_pipeline(
        self,
        pipeline_id: str,
        *,
        display_name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> pipeline_pb2.Pipeline:
        """See :meth:`raypipe.Client.create_pipeline`."""
        request = rpc.create_pipeline(
            pipeline_id, display_name=display_name, description=description, labels=labels
        )
        return (await self._unary(self._pipelines.CreatePipeline, request)).pipeline

    async def get_pipeline(self, pipeline: PipelineRef) -> pipeline_pb2.Pipeline:
        """See :meth:`raypipe.Client.get_pipeline`."""
        request = pipeline_service_pb2.GetPipelineRequest(name=pipeline_name(pipeline))
        return (await self._unary(self._pipelines.GetPipeline, request)).pipeline

    def list_pipelines(
        self, *, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> AsyncPageIterator[pipeline_pb2.Pipeline]:
        """See :meth:`raypipe.Client.list_pipelines`; iterate with ``async for``."""
        request = pipeline_service_pb2.ListPipelinesRequest(filter=filter, page_size=page_size)
        return self._pages(self._pipelines.ListPipelines, request, "pipelines", page_token)

    async def delete_pipeline(self, pipeline: PipelineRef, *, force: bool = False) -> None:
        """See :meth:`raypipe.Client.delete_pipeline`."""
        request = pipeline_service_pb2.DeletePipelineRequest(
            name=pipeline_name(pipeline), force=force
        )
        await self._unary(self._pipelines.DeletePipeline, request)

    async def create_pipeline_version(
        self,
        pipeline: PipelineRef,
        spec: SpecLike,
        *,
        description: str = "",
        keep_default_version: bool = False,
    ) -> pipeline_pb2.PipelineVersion:
        """See :meth:`raypipe.Client.create_pipeline_version`."""
        request = rpc.create_pipeline_version(
            pipeline, spec, description=description, keep_default_version=keep_default_version
        )
        return (await self._unary(self._pipelines.CreatePipelineVersion, request)).pipeline_version

    async def get_pipeline_version(
        self, pipeline: PipelineRef, version: VersionRef | None = None
    ) -> pipeline_pb2.PipelineVersion:
        """See :meth:`raypipe.Client.get_pipeline_version`."""
        if version is None:
            name = rpc.version_in(pipeline)
            if not name:
                name = (await self.get_pipeline(pipeline)).default_version
                if not name:
                    raise NotFoundError(
                        f"pipeline {pipeline_name(pipeline)} has no version yet",
                        reason="PIPELINE_HAS_NO_VERSION",
                    )
        else:
            name = version_name(pipeline, version)
        request = pipeline_service_pb2.GetPipelineVersionRequest(name=name)
        return (await self._unary(self._pipelines.GetPipelineVersion, request)).pipeline_version

    def list_pipeline_versions(
        self,
        pipeline: PipelineRef,
        *,
        omit_spec: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> AsyncPageIterator[pipeline_pb2.PipelineVersion]:
        """See :meth:`raypipe.Client.list_pipeline_versions`; iterate with ``async for``."""
        request = pipeline_service_pb2.ListPipelineVersionsRequest(
            parent=pipeline_name(pipeline), omit_spec=omit_spec, page_size=page_size
        )
        return self._pages(
            self._pipelines.ListPipelineVersions, request, "pipeline_versions", page_token
        )

    async def rollback_pipeline(
        self, pipeline: PipelineRef, version: VersionRef
    ) -> pipeline_pb2.Pipeline:
        """See :meth:`raypipe.Client.rollback_pipeline`."""
        request = pipeline_service_pb2.RollbackPipelineRequest(
            name=pipeline_name(pipeline), version=version_name(pipeline, version)
        )
        return (await self._unary(self._pipelines.RollbackPipeline, request)).pipeline

    async def validate_pipeline_spec(
        self, spec: SpecLike
    ) -> pipeline_service_pb2.ValidatePipelineSpecResponse:
        """See :meth:`raypipe.Client.validate_pipeline_spec`."""
        request = rpc.validate_pipeline_spec(spec)
        return await self._unary(self._pipelines.ValidatePipelineSpec, request)

    async def list_node_types(self) -> list[node_type_pb2.NodeType]:
        """See :meth:`raypipe.Client.list_node_types`."""
        request = pipeline_service_pb2.ListNodeTypesRequest()
        return list((await self._unary(self._pipelines.ListNodeTypes, request)).node_types)

    async def apply(
        self,
        spec: SpecLike,
        *,
        pipeline: PipelineRef | None = None,
        description: str = "",
        display_name: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> ApplyResult:
        """See :meth:`raypipe.Client.apply`."""
        pipeline_id = rpc.apply_pipeline_id(spec, pipeline)
        # Validate first, so that a bad spec leaves no empty pipeline behind.
        digest = (await self.validate_pipeline_spec(spec)).spec_digest
        pipeline_created = False
        try:
            current = await self.get_pipeline(pipeline_id)
        except NotFoundError:
            try:
                current = await self.create_pipeline(
                    pipeline_id, display_name=display_name, labels=labels
                )
                pipeline_created = True
            except AlreadyExistsError:
                current = await self.get_pipeline(pipeline_id)
        if current.default_version:
            default = await self.get_pipeline_version(current.default_version)
            if default.spec_digest == digest:
                return ApplyResult(current, default, pipeline_created, False)
        version = await self.create_pipeline_version(pipeline_id, spec, description=description)
        return ApplyResult(await self.get_pipeline(pipeline_id), version, pipeline_created, True)

    # --- RunService -------------------------------------------------------------------------

    async def create_run(
        self,
        pipeline: PipelineRef | None = None,
        *,
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        display_name: str = "",
        request_id: str | None = None,
    ) -> run_pb2.Run:
        """See :meth:`raypipe.Client.create_run`."""
        request = rpc.create_run(
            pipeline,
            version=version,
            parameters=parameters,
            labels=labels,
            display_name=display_name,
            request_id=request_id,
        )
        return (await self._unary(self._runs.CreateRun, request)).run

    async def get_run(self, run: RunRef) -> run_pb2.Run:
        """See :meth:`raypipe.Client.get_run`."""
        request = run_service_pb2.GetRunRequest(name=run_name(run))
        return (await self._unary(self._runs.GetRun, request)).run

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
        omit_nodes: bool = False,
    ) -> AsyncPageIterator[run_pb2.Run]:
        """See :meth:`raypipe.Client.list_runs`; iterate with ``async for``."""
        request = rpc.list_runs(
            pipeline=pipeline,
            version=version,
            states=states,
            schedule=schedule,
            filter=filter,
            page_size=page_size,
            omit_nodes=omit_nodes,
        )
        return self._pages(self._runs.ListRuns, request, "runs", page_token)

    async def cancel_run(self, run: RunRef) -> run_pb2.Run:
        """See :meth:`raypipe.Client.cancel_run`."""
        request = run_service_pb2.CancelRunRequest(name=run_name(run))
        return (await self._unary(self._runs.CancelRun, request)).run

    async def retry_run(self, run: RunRef, *, request_id: str | None = None) -> run_pb2.Run:
        """See :meth:`raypipe.Client.retry_run`."""
        request = run_service_pb2.RetryRunRequest(
            name=run_name(run), request_id=request_id or rpc.new_request_id()
        )
        return (await self._unary(self._runs.RetryRun, request)).run

    async def watch_run(
        self,
        run: RunRef,
        *,
        timeout: float | None = None,
        event_types: Sequence[run_pb2.RunEvent.Type] = (),
    ) -> AsyncIterator[run_service_pb2.WatchRunResponse]:
        """See :meth:`raypipe.Client.watch_run`; iterate with ``async for``."""
        request = run_service_pb2.WatchRunRequest(name=run_name(run), event_types=event_types)
        call = self._runs.WatchRun(request, timeout=timeout, metadata=self.metadata)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as e:
            raise error_from_rpc_error(e) from e
        finally:
            call.cancel()

    async def get_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        limit: int = 0,
    ) -> run_service_pb2.GetNodeLogsResponse:
        """See :meth:`raypipe.Client.get_node_logs`."""
        if attempt is None:
            attempt = last_attempt(await self.get_run(run), node)
        request = run_service_pb2.GetNodeLogsRequest(
            name=node_log_name(run, node, attempt), offset=offset, limit=limit
        )
        return await self._unary(self._runs.GetNodeLogs, request)

    async def follow_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[node_log_pb2.LogLine]:
        """See :meth:`raypipe.Client.follow_node_logs`; iterate with ``async for``."""
        if attempt is None:
            attempt = last_attempt(await self.get_run(run), node)
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = rpc.Backoff()
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            stream = self.watch_node_logs(
                run, node, attempt=attempt, offset=offset, timeout=remaining
            )
            try:
                async for response in stream:
                    backoff.reset()
                    for line in response.lines:
                        yield line
                    offset = response.next_offset
                    if response.complete:
                        return
            except UnavailableError:
                pass  # reconnect below, from the last offset
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(backoff.next())

    async def watch_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[run_service_pb2.WatchNodeLogsResponse]:
        """See :meth:`raypipe.Client.watch_node_logs`; iterate with ``async for``."""
        if attempt is None:
            attempt = last_attempt(await self.get_run(run), node)
        request = run_service_pb2.WatchNodeLogsRequest(
            name=node_log_name(run, node, attempt), offset=offset
        )
        call = self._runs.WatchNodeLogs(request, timeout=timeout, metadata=self.metadata)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as e:
            raise error_from_rpc_error(e) from e
        finally:
            call.cancel()

    def watch(
        self, run: RunRef, *, timeout: float | None = None
    ) -> AsyncIterator[run_service_pb2.WatchRunResponse]:
        """See :meth:`raypipe.Client.watch`; iterate with ``async for``."""
        if isinstance(run, AsyncRunHandle):
            return run.watch(timeout=timeout)
        return self.watch_run(run, timeout=timeout)

    async def wait_run(
        self,
        run: RunRef,
        *,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        on_event: Callable[[run_service_pb2.WatchRunResponse], object] | None = None,
    ) -> run_pb2.Run:
        """See :meth:`raypipe.Client.wait_run`; ``on_event`` may be a coroutine function."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: run_pb2.Run | None = None
        backoff = rpc.Backoff()
        types = () if on_event is not None else rpc.OUTCOME_EVENTS
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise rpc.wait_timeout(run, timeout, last)
            stream = self.watch_run(run, timeout=remaining, event_types=types)
            try:
                async for response in stream:
                    if response.HasField("run"):
                        last = response.run
                    backoff.reset()
                    if on_event is not None:
                        result = on_event(response)
                        if inspect.isawaitable(result):
                            await result
                    if last is not None and last.state in rpc.TERMINAL_STATES:
                        return rpc.outcome(last, raise_on_failure)
            except UnavailableError:
                pass  # reconnect below
            except DeadlineExceededError:
                if deadline is not None and time.monotonic() >= deadline - 0.05:
                    raise rpc.wait_timeout(run, timeout, last) from None
                raise
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            delay = backoff.next()
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(delay)

    async def run(
        self,
        pipeline: PipelineRef | None = None,
        *,
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        display_name: str = "",
        request_id: str | None = None,
    ) -> AsyncRunHandle:
        """See :meth:`raypipe.Client.run`."""
        created = await self.create_run(
            pipeline,
            version=version,
            parameters=parameters,
            labels=labels,
            display_name=display_name,
            request_id=request_id,
        )
        return AsyncRunHandle(self, created)

    def get_run_handle(self, run: RunRef) -> AsyncRunHandle:
        """A handle on an existing run; makes no call."""
        return AsyncRunHandle(self, run)
