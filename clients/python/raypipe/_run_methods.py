"""The RunService methods of :class:`raypipe.Client`: start, read, list, cancel, retry,
watch and wait for runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from raypipe import _rpc as rpc
from raypipe._errors import (
    DeadlineExceededError,
    UnavailableError,
    error_from_rpc_error,
)
from raypipe._handles import RunHandle
from raypipe._names import PipelineRef, RunRef, VersionRef, run_name
from raypipe._paging import PageIterator
from raypipe.v1 import (
    node_log_pb2,
    pipeline_pb2,
    run_pb2,
    run_service_pb2,
)

if TYPE_CHECKING:
    from raypipe._client import Client

T = TypeVar("T")


class RunMethods:
    """The RunService methods of :class:`raypipe.Client` (and its conveniences on runs)."""

    if TYPE_CHECKING:
        _runs: Any
        metadata: Sequence[tuple[str, str]]

        def _unary(self, method: Callable[..., T], request: Any) -> T: ...
        def _pages(
            self, method: Callable[..., Any], request: Any, field: str, page_token: str
        ) -> PageIterator[Any]: ...
        def get_pipeline(self, pipeline: PipelineRef) -> pipeline_pb2.Pipeline: ...

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
        omit_nodes: bool = False,
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
            omit_nodes: Leave out each run's node records (``Run.nodes``), for listings of
                large runs; :meth:`get_run` has them.
        """
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

    def get_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        limit: int = 0,
    ) -> run_service_pb2.GetNodeLogsResponse:
        """A page of a node attempt's log: stdout, stderr and logging records in the order
        they were written (GetNodeLogs).

        Args:
            run: The run's id or name, a Run message or a handle.
            node: The node's id.
            attempt: The attempt, from 1; default the node's last one.
            offset: The first line (a previous page's ``next_offset``); 0 from the start.
            limit: Lines at most; 0 for the server's default (1,000).

        Returns:
            The lines, ``next_offset``, ``complete`` (the attempt ended and nothing is left)
            and, once it ended, ``cut_lines``/``cut_bytes`` if the log was capped.

        Raises:
            NotFoundError: No such run, node or attempt (reason RUN_NOT_FOUND,
                NODE_NOT_FOUND or ATTEMPT_NOT_FOUND).
        """
        if attempt is None:
            attempt = last_attempt(self.get_run(run), node)
        request = run_service_pb2.GetNodeLogsRequest(
            name=node_log_name(run, node, attempt), offset=offset, limit=limit
        )
        return self._unary(self._runs.GetNodeLogs, request)

    def follow_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> Iterator[node_log_pb2.LogLine]:
        """Every line of a node attempt's log from ``offset``, as it is written, until the
        attempt ends (WatchNodeLogs).

        A stream broken by UNAVAILABLE is reopened from the offset after the last line
        received, so no line is missed or repeated.

        Args:
            run: The run's id or name, a Run message or a handle.
            node: The node's id.
            attempt: The attempt, from 1; default the node's last one when the call is made.
            offset: The first line; 0 from the start.
            timeout: Seconds to follow at most; None for no limit.

        Raises:
            NotFoundError: No such run, node or attempt.
            DeadlineExceededError: ``timeout`` passed first.
        """
        if attempt is None:
            attempt = last_attempt(self.get_run(run), node)
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = rpc.Backoff()
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for response in self.watch_node_logs(
                    run, node, attempt=attempt, offset=offset, timeout=remaining
                ):
                    backoff.reset()
                    yield from response.lines
                    offset = response.next_offset
                    if response.complete:
                        return
            except UnavailableError:
                pass  # reconnect below, from the last offset
            time.sleep(backoff.next())

    def watch_node_logs(
        self,
        run: RunRef,
        node: str,
        *,
        attempt: int | None = None,
        offset: int = 0,
        timeout: float | None = None,
    ) -> Iterator[run_service_pb2.WatchNodeLogsResponse]:
        """One WatchNodeLogs stream: batches of a node attempt's lines from ``offset`` until
        the attempt ends (the last message has ``complete``), or until the stream breaks;
        :meth:`follow_node_logs` re-attaches for you.

        Args:
            run: The run's id or name, a Run message or a handle.
            node: The node's id.
            attempt: The attempt, from 1; default the node's last one.
            offset: The first line; 0 from the start.
            timeout: Seconds the stream may last; None for no limit.
        """
        if attempt is None:
            attempt = last_attempt(self.get_run(run), node)
        request = run_service_pb2.WatchNodeLogsRequest(
            name=node_log_name(run, node, attempt), offset=offset
        )
        try:
            call = self._runs.WatchNodeLogs(request, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise error_from_rpc_error(e) from e
        return _stream(call)

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
        return RunHandle(cast("Client", self), created)

    def get_run_handle(self, run: RunRef) -> RunHandle:
        """A handle on an existing run; makes no call."""
        return RunHandle(cast("Client", self), run)


def node_log_name(run: RunRef, node: str, attempt: int) -> str:
    """``runs/{run}/nodes/{node}/attempts/{attempt}/logs``."""
    return f"{run_name(run)}/nodes/{node}/attempts/{attempt}/logs"


def last_attempt(run: run_pb2.Run, node: str) -> int:
    """The node's last attempt in the run record (at least 1, so a node that never started
    reads as NOT_FOUND ATTEMPT_NOT_FOUND from the server)."""
    for execution in run.nodes:
        if execution.node_id == node:
            return max(1, execution.attempt)
    return 1


def _stream(call: Any) -> Iterator[Any]:
    try:
        yield from call
    except grpc.RpcError as e:
        raise error_from_rpc_error(e) from e
    finally:
        call.cancel()  # a no-op once the stream has ended; stops it when the caller leaves
