"""RunService: create, inspect, watch, cancel and retry runs of pipeline versions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import grpc
from google.protobuf import json_format

from control_plane import names
from control_plane.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    UnavailableError,
)
from control_plane.filtering import parse_filter
from control_plane.rpc import streaming, unary
from control_plane.runs.events import (
    TERMINAL_RUN_STATES,
    RunState,
    RunView,
    struct_of,
    touched_nodes,
)
from control_plane.runs.node_logs import NodeLogs, page_fields
from control_plane.runs.requests import RunRequest
from control_plane.runs.supervisor import RunSupervisor, reusable_outputs
from control_plane.runs.watch_cache import WatchCache
from control_plane.storage.repository import Repository, RunFilter
from raypipe.v1 import run_pb2, run_service_pb2_grpc
from raypipe.v1 import run_service_pb2 as pb

log = logging.getLogger("raypipe.runs")

MAX_REQUEST_ID = 128


class RunService(run_service_pb2_grpc.RunServiceServicer):
    """Implements ``raypipe.v1.RunService``; the engine is reached through the supervisor."""

    def __init__(
        self,
        repository: Repository,
        supervisor: RunSupervisor,
        *,
        watch_poll_seconds: float = 1.0,
    ) -> None:
        self._repo = repository
        self._supervisor = supervisor
        self._watch_poll = watch_poll_seconds
        self._watched = WatchCache(repository)  # one read per batch for all of a run's streams
        self._logs = NodeLogs(repository, lambda: supervisor.artifact_root)

    # --- create ------------------------------------------------------------------------------
    @unary
    def CreateRun(
        self, request: pb.CreateRunRequest, context: grpc.ServicerContext
    ) -> pb.CreateRunResponse:
        run = request.run
        problems = [
            *names.label_violations(run.labels, "run.labels"),
            *names.text_violations(run.display_name, "run.display_name", names.MAX_DISPLAY_NAME),
            *names.text_violations(request.request_id, "request_id", MAX_REQUEST_ID),
        ]
        if problems:
            raise InvalidArgumentError.from_violations(problems)
        pipeline_id, number = self._resolve_version(run)
        return pb.CreateRunResponse(
            run=self._supervisor.start_run(
                RunRequest(
                    pipeline_id=pipeline_id,
                    version_number=number,
                    parameters=json_format.MessageToDict(struct_of(run.parameters)),
                    display_name=run.display_name,
                    labels=dict(run.labels),
                    request_id=request.request_id,
                )
            )
        )

    def _resolve_version(self, run: run_pb2.Run) -> tuple[str, int | None]:
        """The pipeline and the version the request names; None for the default version,
        which the supervisor resolves as it starts the run."""
        if run.pipeline_version:
            pipeline_id, number = names.parse_version_name(
                run.pipeline_version, "run.pipeline_version"
            )
            if (
                run.pipeline
                and names.parse_pipeline_name(run.pipeline, "run.pipeline") != pipeline_id
            ):
                raise InvalidArgumentError.for_field(
                    "run.pipeline_version",
                    f"{run.pipeline_version!r} is not a version of {run.pipeline!r}",
                )
            return pipeline_id, number
        if not run.pipeline:
            raise InvalidArgumentError.for_field(
                "run.pipeline",
                "give run.pipeline (its default version runs) or run.pipeline_version",
            )
        return names.parse_pipeline_name(run.pipeline, "run.pipeline"), None

    # --- read --------------------------------------------------------------------------------
    @unary
    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=self._repo.get_run(names.parse_run_name(request.name)))

    @unary
    def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.ServicerContext
    ) -> pb.ListRunsResponse:
        pipeline_id = (
            names.parse_pipeline_name(request.pipeline, "pipeline") if request.pipeline else ""
        )
        number = 0
        if request.pipeline_version:
            version_pipeline, number = names.parse_version_name(
                request.pipeline_version, "pipeline_version"
            )
            if pipeline_id and pipeline_id != version_pipeline:
                raise InvalidArgumentError.for_field(
                    "pipeline_version", "names a version of another pipeline than `pipeline`"
                )
            pipeline_id = version_pipeline
        for i, state in enumerate(request.states):
            if state not in RunState.values() or state == RunState.STATE_UNSPECIFIED:
                raise InvalidArgumentError.for_field(f"states[{i}]", f"{state} is not a run state")
        page = self._repo.list_runs(
            page_size=names.page_size(request.page_size),
            page_token=request.page_token,
            filter=RunFilter(
                pipeline_id=pipeline_id,
                version_number=number,
                states=tuple(request.states),
                schedule=request.schedule,
                terms=tuple(parse_filter(request.filter)),
            ),
            omit_nodes=request.omit_nodes,
        )
        return pb.ListRunsResponse(runs=page.items, next_page_token=page.next_page_token)

    # --- cancel ------------------------------------------------------------------------------
    @unary
    def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.ServicerContext
    ) -> pb.CancelRunResponse:
        run_id = names.parse_run_name(request.name)
        run = self._repo.get_run(run_id)
        if run.state in TERMINAL_RUN_STATES:
            raise FailedPreconditionError(
                f"run {run.name!r} already ended ({RunState.Name(run.state)})",
                reason="RUN_ALREADY_ENDED",
            )
        run = self._supervisor.request_cancel(run)
        return pb.CancelRunResponse(run=run)

    # --- watch -------------------------------------------------------------------------------
    @streaming
    def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchRunResponse]:
        run_id = names.parse_run_name(request.name)
        wanted = _event_types(request.event_types)
        notifier = self._supervisor.notifier
        seen = notifier.version(run_id)
        # The events first, then the run: the snapshot is at least as new as the last event
        # it stands for, and every later event is replayed onto it.
        events = self._repo.list_events(run_id)
        last = events[-1].sequence if events else 0
        view = RunView(self._repo.get_run(run_id))
        run = view.run
        snapshot = run_pb2.RunEvent(
            sequence=last,
            type=run_pb2.RunEvent.TYPE_SNAPSHOT,
            run_state=run.state,
            message="current state",
        )
        snapshot.time.GetCurrentTime()
        yield pb.WatchRunResponse(event=snapshot, run=run)
        touched: set[str] = set()  # nodes changed since the view was last brought up to date
        while run.state not in TERMINAL_RUN_STATES and context.is_active():
            # Woken by this process's supervisor at once; the timed re-read also picks up
            # events recorded by another replica sharing the database.
            seen = notifier.wait(run_id, seen, self._watch_poll)
            if notifier.closed:
                # A watcher would otherwise hold the shutdown for the whole grace period;
                # it re-attaches to the restarted server (or another replica) and gets a
                # fresh snapshot, as the SDK does on UNAVAILABLE.
                raise UnavailableError(
                    "the server is shutting down; watch the run again", reason="SHUTTING_DOWN"
                )
            events = self._watched.events_after(run_id, last)
            if not events:
                continue
            last = events[-1].sequence
            touched |= touched_nodes(event.node_id for event in events)
            if wanted is not None:
                ended = any(event.run_state in TERMINAL_RUN_STATES for event in events)
                events = [event for event in events if event.type in wanted]
                if not events and not ended:
                    continue  # nothing for this watcher; its view catches up when it sends
            # Only the nodes these events touch are read again (a 1,000-node run has
            # thousands of events), and folded into the stream's own copy of the run.
            run = view.update(self._watched.nodes(run_id, touched, last))
            touched = set()
            # The whole run rides on the last event of each batch and on run-state changes;
            # a 1,000-node DAG's record on each of its thousands of events would dwarf them.
            for i, event in enumerate(events):
                with_run = (
                    i == len(events) - 1 or event.type == run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED
                )
                yield pb.WatchRunResponse(event=event, run=run if with_run else None)

    # --- node logs ---------------------------------------------------------------------------
    @unary
    def GetNodeLogs(
        self, request: pb.GetNodeLogsRequest, context: grpc.ServicerContext
    ) -> pb.GetNodeLogsResponse:
        page, complete = self._logs.page(request.name, request.offset, request.limit)
        return pb.GetNodeLogsResponse(**page_fields(page, complete))

    @streaming
    def WatchNodeLogs(
        self, request: pb.WatchNodeLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchNodeLogsResponse]:
        notifier = self._supervisor.notifier
        complete = False
        for page, complete in self._logs.follow(
            request.name, request.offset, context.is_active, lambda: notifier.closed
        ):
            yield pb.WatchNodeLogsResponse(**page_fields(page, complete))
        if not complete and notifier.closed and context.is_active():
            raise UnavailableError(
                "the server is shutting down; follow the log again from next_offset",
                reason="SHUTTING_DOWN",
            )

    # --- retry -------------------------------------------------------------------------------
    @unary
    def RetryRun(
        self, request: pb.RetryRunRequest, context: grpc.ServicerContext
    ) -> pb.RetryRunResponse:
        run_id = names.parse_run_name(request.name)
        if len(request.request_id) > MAX_REQUEST_ID:
            raise InvalidArgumentError.for_field(
                "request_id", f"at most {MAX_REQUEST_ID} characters"
            )
        original = self._repo.get_run(run_id)
        if original.state not in (RunState.STATE_FAILED, RunState.STATE_CANCELLED):
            raise FailedPreconditionError(
                f"run {original.name!r} is {RunState.Name(original.state)}: only a FAILED or "
                "CANCELLED run can be retried",
                reason="RUN_NOT_RETRYABLE",
            )
        pipeline_id, number = names.parse_version_name(original.pipeline_version, "name")
        return pb.RetryRunResponse(
            run=self._supervisor.start_run(
                RunRequest(
                    pipeline_id=pipeline_id,
                    version_number=number,
                    parameters=json_format.MessageToDict(struct_of(original.parameters)),
                    display_name=original.display_name,
                    labels=dict(original.labels),
                    request_id=request.request_id,
                    retry_of=original.name,
                    reuse=reusable_outputs(original),
                )
            )
        )


def _event_types(types: Iterable[int]) -> frozenset[int] | None:
    """WatchRunRequest.event_types as a set, None for every type; INVALID_ARGUMENT naming
    each entry that is not a type of event."""
    problems = [
        FieldViolation(
            f"event_types[{i}]",
            f"{value} is not an event type; use one of "
            + ", ".join(name for name, number in run_pb2.RunEvent.Type.items() if number != 0),
        )
        for i, value in enumerate(types)
        if value == run_pb2.RunEvent.TYPE_UNSPECIFIED or value not in run_pb2.RunEvent.Type.values()
    ]
    if problems:
        raise InvalidArgumentError.from_violations(problems)
    return frozenset(types) or None
