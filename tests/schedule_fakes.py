"""A RunStarter without Ray for scheduler tests: runs are stored in the real database and
their end is decided by the test. Also the little set-up every scheduler test needs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf import struct_pb2

from control_plane.schedules.scheduler import StartRequest
from control_plane.schedules.timing import Clock
from control_plane.storage.repository import NewRun, RunChange, RunFilter
from control_plane.storage.schedules import ATTEMPT_LABEL
from control_plane.storage.sql import SqlRepository
from raypipe.v1 import pipeline_spec_pb2, run_pb2

RunState = run_pb2.Run.State
ACTIVE = (RunState.STATE_PENDING, RunState.STATE_RUNNING, RunState.STATE_CANCELLING)


class Crash(BaseException):
    """Stands for kill -9 inside a process: nothing catches it, nothing after it runs."""


@dataclass
class FakeStarter:
    """Starts runs by storing them (PENDING) in the real database, as the RunSupervisor
    does before it hands them to Ray; :meth:`finish` ends them.

    Attributes:
        before_create: Called before a run is stored (raise Crash to die before it).
        after_create: Called after a run is stored (raise Crash to die before the
            scheduler records it).
        created: The requests that created a run, in order.
        cancelled: Run ids cancelled, in order.
    """

    repo: SqlRepository
    clock: Clock
    before_create: Callable[[StartRequest], None] | None = None
    after_create: Callable[[StartRequest], None] | None = None
    created: list[StartRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def start(self, request: StartRequest) -> run_pb2.Run:
        version = self.repo.get_version(request.pipeline_id, request.version_number)
        if self.before_create is not None:
            self.before_create(request)
        run, created = self.repo.create_run(
            NewRun(
                run_id=uuid.uuid4().hex,
                pipeline_id=request.pipeline_id,
                version_number=request.version_number,
                parameters=request.parameters,
                node_ids=[n.id for n in version.spec.nodes],
                display_name=request.display_name,
                labels=request.labels,
                request_id=request.request_id,
                schedule=request.schedule,
                scheduled_time=request.scheduled_time,
            )
        )
        if created:
            self.created.append(request)
        if self.after_create is not None:
            self.after_create(request)
        return run

    def cancel(self, run_id: str) -> None:
        if self.repo.get_run(run_id).state in ACTIVE:
            self.finish(run_id, RunState.STATE_CANCELLED)
            self.cancelled.append(run_id)

    def finish(self, run: run_pb2.Run | str, state: int = RunState.STATE_SUCCEEDED) -> None:
        """End a run, at the clock's time."""
        run_id = run if isinstance(run, str) else run.name.removeprefix("runs/")
        self.repo.record(run_id, RunChange(state=state, end_time=self.clock.now()))

    def runs(self, schedule_id: str = "") -> list[run_pb2.Run]:
        """The stored runs (of one schedule), oldest first."""
        out: list[run_pb2.Run] = []
        token = ""
        while True:
            page = self.repo.list_runs(
                page_size=1000, page_token=token, filter=RunFilter(schedule=schedule_id)
            )
            out.extend(page.items)
            token = page.next_page_token
            if not token:
                return sorted(out, key=lambda r: (r.scheduled_time.ToDatetime(), attempt(r)))

    def active(self, schedule_id: str = "") -> list[run_pb2.Run]:
        return [r for r in self.runs(schedule_id) if r.state in ACTIVE]


def attempt(run: run_pb2.Run) -> int:
    return int(run.labels.get(ATTEMPT_LABEL, "1"))


def scheduled(run: run_pb2.Run) -> datetime:
    return run.scheduled_time.ToDatetime(tzinfo=UTC)


def noop_spec(*parameters: str) -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.nodes.add(id="a", type="noop")
    for name in parameters:
        spec.parameters[name].CopyFrom(struct_pb2.Value(string_value=""))
    return spec


def add_pipeline(repo: SqlRepository, pipeline_id: str, *parameters: str) -> int:
    """A pipeline with one version (its default); returns the version number."""
    repo.create_pipeline(pipeline_id, display_name=pipeline_id, description="", labels={})
    return add_version(repo, pipeline_id, *parameters)


def add_version(repo: SqlRepository, pipeline_id: str, *parameters: str) -> int:
    version = repo.create_version(
        pipeline_id,
        noop_spec(*parameters),
        spec_digest="0" * 64,
        description="",
        make_default=True,
    )
    return version.version_number
