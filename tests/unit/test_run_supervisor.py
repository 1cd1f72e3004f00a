"""Run supervision without Ray: the RunSupervisor against a fake engine (tests/engine_fakes.py)
and a real SQLite file. What the engine reports is folded into the stored run, watchers are
woken, the tracker hears of every start and end, events are acknowledged once stored; a run
the engine cannot take, a refused run and a run lost with the cluster end FAILED through the
same path; a restart submits again what was stored but never submitted."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control_plane.runs.supervisor import RunSupervisor, rebuild_submission
from control_plane.storage.repository import NewRun
from control_plane.storage.sql import SqlRepository, open_repository
from ray_nodes.engine import EngineEvent
from raypipe.v1 import pipeline_spec_pb2, run_pb2
from tests.engine_fakes import FakeEngine
from tests.schedule_fakes import add_pipeline, noop_spec

RunState = run_pb2.Run.State
NodeState = run_pb2.NodeExecution.State


@dataclass
class RecordingTracker:
    """A Tracker that notes which hooks were called for which run."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, hook: str, run: run_pb2.Run) -> None:
        with self.lock:
            self.calls.append((hook, run.name))

    def start(self, store: object) -> None:
        pass

    def run_started(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        self._note("started", run)

    def run_resumed(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        self._note("resumed", run)

    def events(self, run: run_pb2.Run, events: Sequence[EngineEvent]) -> None:
        self._note("events", run)

    def run_finished(self, run: run_pb2.Run) -> None:
        self._note(f"finished {RunState.Name(run.state)}", run)

    def close(self, timeout: float = 5.0) -> None:
        pass

    def pending(self) -> int:
        return 0

    def of(self, name: str) -> list[str]:
        with self.lock:
            return [hook for hook, run in self.calls if run == name]


@dataclass
class Env:
    repo: SqlRepository
    engine: FakeEngine
    tracker: RecordingTracker
    supervisor: RunSupervisor

    def new_run(self, request_id: str = "") -> NewRun:
        return NewRun(
            run_id=uuid.uuid4().hex,
            pipeline_id="p",
            version_number=1,
            parameters={},
            node_ids=["a"],
            request_id=request_id,
        )

    def launch(self, request_id: str = "") -> run_pb2.Run:
        return self.supervisor.launch(self.new_run(request_id), noop_spec().SerializeToString())

    def wait_for(self, run: run_pb2.Run, state: int, timeout: float = 10.0) -> run_pb2.Run:
        """The stored run once it is in ``state``, following the notifier as WatchRun does."""
        run_id = run.name.removeprefix("runs/")
        notifier = self.supervisor.notifier
        seen = notifier.version(run_id)
        for _ in range(int(timeout / 0.1)):
            stored = self.repo.get_run(run_id)
            if stored.state == state:
                return stored
            seen = notifier.wait(run_id, seen, 0.1)
        raise AssertionError(f"{run.name} never reached {RunState.Name(state)}")


def _supervisor(
    repo: SqlRepository, engine: FakeEngine, tracker: RecordingTracker
) -> RunSupervisor:
    return RunSupervisor(
        repo,
        engine,
        artifact_root="/nonexistent/artifacts",
        data_roots=("/nonexistent/data",),
        poll_timeout=0.2,
        tracker=tracker,
    )


def _start(supervisor: RunSupervisor, repo: SqlRepository) -> None:
    supervisor.start(
        lambda run_id: rebuild_submission(
            repo, run_id, artifact_root="/nonexistent/artifacts", data_roots=("/nonexistent",)
        )
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    repo = open_repository(f"sqlite:///{tmp_path / 'raypipe.db'}")
    add_pipeline(repo, "p")
    engine, tracker = FakeEngine(), RecordingTracker()
    supervisor = _supervisor(repo, engine, tracker)
    _start(supervisor, repo)
    yield Env(repo, engine, tracker, supervisor)
    supervisor.stop()
    repo.close()


def test_what_the_engine_reports_is_stored_watched_tracked_and_acknowledged(env: Env) -> None:
    run = env.launch()
    run_id = run.name.removeprefix("runs/")
    assert run.state == RunState.STATE_PENDING
    assert env.engine.submitted[run_id].pipeline_id == "p"
    before = env.supervisor.notifier.version(run_id)

    env.engine.emit(run_id, "run", state="RUNNING")
    env.engine.emit(run_id, "node", "a", "RUNNING", attempt=1)
    running = env.wait_for(run, RunState.STATE_RUNNING)
    assert running.HasField("start_time")
    env.engine.emit(run_id, "node", "a", "SUCCEEDED", attempt=1, metrics={"rows_out": 3.0})
    last = env.engine.emit(run_id, "run", state="SUCCEEDED")

    done = env.wait_for(run, RunState.STATE_SUCCEEDED)
    (node,) = done.nodes
    assert node.state == NodeState.STATE_SUCCEEDED
    assert node.metrics["rows_out"] == 3.0
    assert done.HasField("end_time")
    assert env.supervisor.notifier.version(run_id) > before  # watchers were woken
    assert env.supervisor.wait_idle(5)  # no longer followed
    assert env.engine.acked[run_id] == last  # every stored event acknowledged
    hooks = env.tracker.of(run.name)
    assert hooks[0] == "started"
    assert hooks[-1] == "finished STATE_SUCCEEDED"
    assert "events" in hooks


def test_the_same_request_id_starts_one_run(env: Env) -> None:
    first = env.launch(request_id="r-1")
    again = env.launch(request_id="r-1")
    assert again.name == first.name
    assert env.engine.submits == [first.name.removeprefix("runs/")]
    assert env.tracker.of(first.name) == ["started"]


def test_a_run_the_engine_cannot_take_ends_failed_with_why(env: Env) -> None:
    env.engine.fail_submit = ConnectionError("the cluster is gone")
    run = env.launch()
    assert run.state == RunState.STATE_FAILED
    assert "could not hand the run to Ray: the cluster is gone" in run.error.message
    assert run.error.type == "builtins.ConnectionError"
    assert env.tracker.of(run.name) == ["started", "finished STATE_FAILED"]


def test_a_refused_run_is_recorded_like_every_end_and_never_submitted(env: Env) -> None:
    new = env.new_run(request_id="refused-1")
    seen = env.supervisor.notifier.version(new.run_id)
    error = run_pb2.ExecutionError(type="raypipe.InvalidParameters", message="no parameter x")
    run = env.supervisor.refuse(new, noop_spec().SerializeToString(), error)
    assert run.state == RunState.STATE_FAILED
    assert run.error.message == "no parameter x"
    assert env.engine.submits == []
    assert env.supervisor.notifier.version(new.run_id) > seen
    assert env.tracker.of(run.name) == ["started", "finished STATE_FAILED"]
    stored = env.repo.get_run(new.run_id)
    assert [RunState.Name(e.run_state) for e in stored_events(env, new.run_id)] == ["STATE_FAILED"]
    assert stored.state == RunState.STATE_FAILED
    again = env.supervisor.refuse(new, noop_spec().SerializeToString(), error)
    assert again.name == run.name  # the same request: nothing new recorded
    assert env.tracker.of(run.name) == ["started", "finished STATE_FAILED"]


def stored_events(env: Env, run_id: str) -> list[run_pb2.RunEvent]:
    return env.repo.list_events(run_id)


def test_cancel_records_cancelling_and_asks_the_engine(env: Env) -> None:
    run = env.launch()
    run_id = run.name.removeprefix("runs/")
    env.engine.emit(run_id, "run", state="RUNNING")
    env.wait_for(run, RunState.STATE_RUNNING)
    cancelling = env.supervisor.request_cancel(env.repo.get_run(run_id))
    assert cancelling.state == RunState.STATE_CANCELLING
    assert env.engine.cancelled == [run_id]
    env.engine.emit(run_id, "run", state="RUNNING")  # late news must not step back
    env.engine.emit(run_id, "run", state="CANCELLED")
    assert env.wait_for(run, RunState.STATE_CANCELLED).state == RunState.STATE_CANCELLED


def test_a_run_lost_with_the_cluster_ends_failed(env: Env) -> None:
    run = env.launch()
    run_id = run.name.removeprefix("runs/")
    env.engine.emit(run_id, "run", state="RUNNING")
    env.wait_for(run, RunState.STATE_RUNNING)
    env.engine.forget(run_id)
    lost = env.wait_for(run, RunState.STATE_FAILED)
    assert lost.error.type == "raypipe.RunLost"
    assert env.tracker.of(run.name)[-1] == "finished STATE_FAILED"


def test_a_restart_submits_what_was_stored_but_never_submitted(tmp_path: Path) -> None:
    repo = open_repository(f"sqlite:///{tmp_path / 'raypipe.db'}")
    add_pipeline(repo, "p")
    stored, _ = repo.create_run(
        NewRun(run_id="pending1", pipeline_id="p", version_number=1, parameters={}, node_ids=["a"])
    )
    engine, tracker = FakeEngine(), RecordingTracker()
    supervisor = _supervisor(repo, engine, tracker)
    _start(supervisor, repo)  # the process that stored it died before submitting
    try:
        assert engine.submits == ["pending1"]
        engine.emit("pending1", "run", state="SUCCEEDED")
        env = Env(repo, engine, tracker, supervisor)
        assert env.wait_for(stored, RunState.STATE_SUCCEEDED).state == RunState.STATE_SUCCEEDED
    finally:
        supervisor.stop()
        repo.close()


def test_start_run_resolves_the_default_version_and_checks_parameters(env: Env) -> None:
    from control_plane.errors import FailedPreconditionError, InvalidArgumentError
    from control_plane.runs.requests import RunRequest
    from tests.schedule_fakes import add_version

    run = env.supervisor.start_run(RunRequest("p", None, request_id="d-1"))
    assert run.pipeline_version == "pipelines/p/versions/1"  # the default, resolved now
    add_version(env.repo, "p", "x")  # version 2, declares x, becomes the default
    run = env.supervisor.start_run(RunRequest("p", None, {"x": "v"}))
    assert run.pipeline_version == "pipelines/p/versions/2"

    with pytest.raises(InvalidArgumentError) as bad:
        env.supervisor.start_run(RunRequest("p", 1, {"x": "v", "y": 1}))
    assert [v.field for v in bad.value.violations] == ["run.parameters['x']", "run.parameters['y']"]
    submitted = len(env.engine.submits)
    refused = env.supervisor.start_run(RunRequest("p", 1, {"y": 1}, refuse_undeclared=True))
    assert refused.state == RunState.STATE_FAILED
    assert "pipelines/p/versions/1 declares no parameter 'y'" in refused.error.message
    assert len(env.engine.submits) == submitted  # a refused run never reaches the engine

    env.repo.create_pipeline("empty", display_name="", description="", labels={})
    with pytest.raises(FailedPreconditionError) as none:
        env.supervisor.start_run(RunRequest("empty", None))
    assert none.value.reason == "PIPELINE_HAS_NO_VERSION"
