"""The storage seam of the control plane.

Services talk to storage only through :class:`Repository`. Values in and out are the API's
protobuf messages, so there is one representation of a resource on either side of the seam.
Every method is a single transaction: it either happens completely or not at all. Errors are
the control plane's :mod:`control_plane.errors` (``NotFoundError``, ``AlreadyExistsError``,
``FailedPreconditionError``, ``InvalidArgumentError`` for a bad page token or filter).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2, run_pb2

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first, and the token of the next page ("" on the last)."""

    items: list[T]
    next_page_token: str = ""


@dataclass(frozen=True)
class LabelTerm:
    """One term of a list filter: ``labels.KEY = "V"``, ``!=``, ``:*`` (has), or a field."""

    key: str  # "labels.team" or a plain field such as "display_name"
    op: str  # "=", "!=", ":*"
    value: str = ""


@dataclass(frozen=True)
class RunFilter:
    """Restrictions of ListRuns; empty fields do not restrict."""

    pipeline_id: str = ""
    version_number: int = 0
    states: tuple[int, ...] = ()
    schedule: str = ""
    terms: tuple[LabelTerm, ...] = ()


@dataclass(frozen=True)
class RunChange:
    """A change to one run, recorded atomically with its node records and events.

    Only the fields that are not None change. ``node_updates`` replace the stored record of
    each named node whole. ``events`` are appended to the run's history; storage assigns
    their ``sequence`` numbers (1, 2, 3, ... per run, no gaps). ``engine_cursor`` is the last
    engine event folded into this change, so a restarted control plane resumes after it.
    """

    state: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: run_pb2.ExecutionError | None = None
    node_updates: Sequence[run_pb2.NodeExecution] = ()
    events: Sequence[run_pb2.RunEvent] = ()
    engine_cursor: int | None = None
    labels: dict[str, str] | None = None
    #: Replaces the run's TrackingInfo whole (the experiment tracker's record of the run).
    tracking: run_pb2.TrackingInfo | None = None


@dataclass(frozen=True)
class RecorderLease:
    """A control-plane replica's lease on recording a run (docs/deploy.md).

    Attributes:
        holder: The replica's id (unique per process).
        until: When the lease lapses unless renewed, in seconds since the epoch.
    """

    holder: str
    until: float


class LeaseLostError(Exception):
    """A fenced write found that another replica records the run now: nothing was written,
    and the caller stops recording the run. (Internal to the control plane, never an API
    error.)"""


@dataclass(frozen=True)
class NewRun:
    """What CreateRun stores. The run starts PENDING with one PENDING record per node."""

    run_id: str
    pipeline_id: str
    version_number: int
    parameters: dict[str, object]
    node_ids: Sequence[str]
    display_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    schedule: str = ""
    scheduled_time: datetime | None = None
    retry_of: str = ""
    #: node id -> NodeExecution.cache_key, for the nodes whose CachePolicy is enabled.
    cache_keys: Mapping[str, str] = field(default_factory=dict)
    #: Who created it (Run.creator).
    creator: str = ""
    #: The replica that will record it (the one that creates it), when runs are recorded
    #: under leases.
    recorder: RecorderLease | None = None


class Repository(Protocol):
    """Everything the control plane stores. Implementations: :mod:`.sql` (SQLite, PostgreSQL)."""

    # --- lifecycle ---------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise if the store cannot answer a trivial query (used by the health service)."""
        ...

    def close(self) -> None:
        """Release connections; later calls fail."""
        ...

    # --- pipelines -----------------------------------------------------------------------------
    def create_pipeline(
        self, pipeline_id: str, *, display_name: str, description: str, labels: dict[str, str]
    ) -> pipeline_pb2.Pipeline: ...

    def get_pipeline(self, pipeline_id: str) -> pipeline_pb2.Pipeline: ...

    def list_pipelines(
        self, *, page_size: int, page_token: str, terms: Sequence[LabelTerm]
    ) -> Page[pipeline_pb2.Pipeline]: ...

    def delete_pipeline(self, pipeline_id: str, *, force: bool) -> None:
        """Delete a pipeline and its versions. Without ``force``, FailedPreconditionError while
        a run that is not terminal, or a schedule, refers to it. Run history is kept."""
        ...

    # --- versions ------------------------------------------------------------------------------
    def create_version(
        self,
        pipeline_id: str,
        spec: pipeline_spec_pb2.PipelineSpec,
        *,
        spec_digest: str,
        description: str,
        make_default: bool,
        creator: str = "",
    ) -> pipeline_pb2.PipelineVersion:
        """Store the next version: numbers 1, 2, 3, ... with no gap or duplicate, also under
        concurrent calls from several processes."""
        ...

    def get_version(
        self, pipeline_id: str, version_number: int
    ) -> pipeline_pb2.PipelineVersion: ...

    def list_versions(
        self, pipeline_id: str, *, page_size: int, page_token: str, omit_spec: bool
    ) -> Page[pipeline_pb2.PipelineVersion]: ...

    def set_default_version(
        self, pipeline_id: str, version_number: int
    ) -> pipeline_pb2.Pipeline: ...

    # --- runs ----------------------------------------------------------------------------------
    def create_run(self, new: NewRun) -> tuple[run_pb2.Run, bool]:
        """Store a new run; returns (run, created). A request_id seen before returns the
        existing run and False. (schedule, scheduled_time) is unique: a duplicate raises
        AlreadyExistsError."""
        ...

    def get_run(self, run_id: str, *, node_ids: Collection[str] | None = None) -> run_pb2.Run:
        """The run; with ``node_ids``, only those of its nodes (a cheap read of a big run)."""
        ...

    def list_runs(
        self, *, page_size: int, page_token: str, filter: RunFilter, omit_nodes: bool = False
    ) -> Page[run_pb2.Run]:
        """Runs newest first; with ``omit_nodes``, without their node records (not read)."""
        ...

    def record(
        self,
        run_id: str,
        change: RunChange,
        *,
        node_ids: Collection[str] | None = None,
        lease: RecorderLease | None = None,
    ) -> tuple[run_pb2.Run, list[run_pb2.RunEvent]]:
        """Apply a change atomically; returns the run after it (with only the nodes in
        ``node_ids`` when given) and the events as stored. With ``lease``, only while its
        holder records the run (renewing the lease to its ``until``); otherwise nothing is
        written and LeaseLostError is raised."""
        ...

    def list_events(self, run_id: str, *, after_sequence: int = 0) -> list[run_pb2.RunEvent]: ...

    def engine_cursor(self, run_id: str) -> int: ...

    def active_run_ids(self) -> list[str]:
        """Ids of runs that are not terminal (PENDING, RUNNING, CANCELLING), oldest first."""
        ...

    # --- who records which run (control-plane replicas; docs/deploy.md) ------------------------
    @property
    def shared(self) -> bool:
        """Whether other control-plane processes may write this store (PostgreSQL); False
        for a SQLite file this process has claimed, whose runs it may take at once."""
        ...

    def claim_run(
        self, run_id: str, lease: RecorderLease, *, now: float, replacing: str = ""
    ) -> bool:
        """Make ``lease.holder`` the recorder of an active run nobody else holds a live lease
        on (no lease, or one that lapsed before ``now``, or its own, or one of ``replacing``,
        a recorder known to be dead); True when it is."""
        ...

    def recorders_like(self, prefix: str) -> dict[str, str]:
        """Active runs whose recorder's name starts with ``prefix``: run id -> recorder."""
        ...

    def unclaimed_run_ids(self, now: float) -> list[str]:
        """Active runs whose recording lease is missing or lapsed before ``now``, oldest
        first: those a replica may claim."""
        ...

    def renew_claims(self, lease: RecorderLease) -> set[str]:
        """Extend every lease ``lease.holder`` holds on an active run to ``lease.until``;
        returns those runs (a run missing from them is recorded elsewhere now, or ended)."""
        ...

    def release_claims(self, holder: str) -> int:
        """Give up ``holder``'s leases (a replica stopping), so another replica takes its
        runs at once; returns how many it held."""
        ...

    def listen_runs(self, callback: Callable[[str], None]) -> Closable | None:
        """Call ``callback(run_id)`` whenever another process records events of a run (on
        PostgreSQL, through LISTEN/NOTIFY), until the returned handle is closed; None where
        the store has no such channel (SQLite: one process writes it)."""
        ...

    def count_runs_by_state(self) -> dict[int, int]:
        """How many runs are stored in each state (Run.State number -> count)."""
        ...

    def find_cached_nodes(
        self, cache_keys: Collection[str], *, exclude_run_id: str = ""
    ) -> dict[str, tuple[str, run_pb2.NodeExecution]]:
        """cache key -> (run id, node record) of the newest SUCCEEDED or CACHED node execution
        with that key (in any run but ``exclude_run_id``); keys with none are left out."""
        ...
