"""The values that cross the seam between the control plane and the engine.

They are plain frozen dataclasses (no protobuf, no Ray), pickled to and from the supervisor
actor, so the control plane can translate them into its own records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ray_nodes.logs import DEFAULT_MAX_BYTES


class NodeState(StrEnum):
    """A node's state as the engine reports it: the names of ``raypipe.v1.NodeExecution.State``
    values without their ``STATE_`` prefix (a StrEnum: it equals, pickles and formats as that
    name). PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED; PENDING -> CACHED | SKIPPED |
    CANCELLED | FAILED (resources no node has)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"
    CACHED = "CACHED"


class RunState(StrEnum):
    """A run's state as the engine reports it (``raypipe.v1.Run.State`` without ``STATE_``):
    RUNNING -> SUCCEEDED | FAILED | CANCELLED, or FAILED at once when the graph cannot run."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: Node states the engine reports.
NODE_STATES = tuple(NodeState)
#: Run states the engine reports.
RUN_STATES = tuple(RunState)
TERMINAL_NODE_STATES = frozenset(NodeState) - {NodeState.PENDING, NodeState.RUNNING}
#: The states a run ends in.
TERMINAL_RUN_STATES = frozenset(RunState) - {RunState.RUNNING}


@dataclass(frozen=True)
class ArtifactRef:
    """One stored output of a node: where it lies and how to check it."""

    name: str
    kind: str
    uri: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailure:
    """Why a node failed: the original exception's qualified type, message and traceback."""

    node_id: str
    type: str
    message: str
    traceback: str = ""
    #: The last lines the failed attempt wrote (ray_nodes.logs.LogWriter.tail).
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineEvent:
    """One change of a run or of one of its nodes, numbered per run from 1 without gaps."""

    seq: int
    time: float
    kind: str  # "run" | "node" | "progress"
    node_id: str = ""
    state: str = ""
    attempt: int = 0
    error: NodeFailure | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: tuple[ArtifactRef, ...] = ()
    notes: tuple[str, ...] = ()
    ray_task_id: str = ""
    ray_node_id: str = ""
    ray_node_address: str = ""
    message: str = ""
    cached_from: str = ""
    start_time: float = 0.0
    end_time: float = 0.0


#: The values of :attr:`RunSubmission.keep_outputs`.
KEEP_OUTPUTS = ("on_failure", "always")


@dataclass(frozen=True)
class RunSubmission:
    """Everything the engine needs to execute a run.

    Attributes:
        run_id: The run's id; submitting the same id twice starts it once.
        run_name: The run's display name (``{{ run.name }}``).
        pipeline_id: Names the Ray tasks ``{pipeline_id}/{node_id}``.
        spec: ``PipelineSpec.SerializeToString()`` of a validated spec.
        parameters: The run's parameter values; the spec's defaults fill the rest.
        artifact_root: Directory or fsspec URL under which node outputs are stored.
        data_roots: Directories data_loader paths resolve against.
        reuse: node id -> (the run whose output it reuses, that output's artifacts): these
            nodes are not executed but load their stored output (RetryRun).
        scheduled_time: RFC 3339 time for ``{{ run.scheduled_time }}``; empty if none.
        keep_outputs: When node outputs are written to the artifact store: ``on_failure``
            (the default) writes the outputs of the nodes that succeeded once the run has
            failed or been cancelled, for RetryRun, so a run that succeeds writes none;
            ``always`` writes every output as its node ends. Outputs of nodes whose
            CachePolicy is enabled, and outputs of a few bytes, are always kept.
    """

    run_id: str
    run_name: str
    pipeline_id: str
    spec: bytes
    parameters: Mapping[str, Any]
    artifact_root: str
    data_roots: tuple[str, ...] = ()
    reuse: Mapping[str, tuple[str, tuple[ArtifactRef, ...]]] = field(default_factory=dict)
    scheduled_time: str = ""
    keep_outputs: str = "on_failure"
    #: The text each node attempt's log keeps, head and tail (ray_nodes.logs); 0 keeps none.
    log_max_bytes: int = DEFAULT_MAX_BYTES
    #: On a cluster with an autoscaler: how long a node that no node of the cluster can hold
    #: waits for the autoscaler to add one (of a node type that can) before it fails.
    capacity_wait_s: float = 600.0


@dataclass(frozen=True)
class PollResult:
    """What :meth:`RayEngine.poll` found: new events per run, and runs the engine does not
    know (lost with a restarted cluster, or never submitted)."""

    events: dict[str, list[EngineEvent]]
    unknown: frozenset[str] = frozenset()


class Engine(Protocol):
    """What the control plane drives runs through: :class:`~ray_nodes.engine.RayEngine` on a
    Ray cluster; tests of run supervision use a fake (``tests/engine_fakes.py``).

    Every method may be called from the control plane's threads; none blocks longer than its
    round trip, except :meth:`poll`, which waits up to ``timeout_s`` for news.
    """

    def start(self) -> None:
        """Connect; afterwards every other method works."""
        ...

    def submit(self, submission: RunSubmission) -> None:
        """Start executing a run; submitting the same run twice starts it once."""
        ...

    def cancel(self, run_id: str) -> None:
        """Stop a run: its running nodes are cancelled, and it ends CANCELLED."""
        ...

    def poll(self, cursors: Mapping[str, int], timeout_s: float) -> PollResult:
        """The events of the given runs after their cursors (each run's last stored event
        number), waiting up to ``timeout_s`` for the first; and the runs it does not know."""
        ...

    def ack(self, run_id: str, seq: int) -> None:
        """The events of ``run_id`` up to ``seq`` are stored: the engine may forget them."""
        ...

    def known_runs(self) -> list[str]:
        """The ids of the runs the engine executes or holds unacknowledged events of."""
        ...

    def close(self) -> None:
        """Let go of the engine; runs go on."""
        ...


@dataclass(frozen=True)
class NodeResult:
    """What a node's ``run`` may return instead of a bare output: the output plus metrics it
    measured (scores, training figures) and files it wrote (``ArtifactRef`` fields as dicts
    or ``ArtifactRef``)."""

    output: Any
    metrics: Mapping[str, float] = field(default_factory=dict)
    artifacts: Sequence[Any] = ()
