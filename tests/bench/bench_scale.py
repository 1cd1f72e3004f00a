"""The control plane at scale: 100,000 runs and 1,000,000 node executions stored.

1. Stores of 100,000 runs of 10 nodes (1,000,000 node executions, 2,200,000 run events: the
   run's RUNNING and SUCCEEDED, each node's RUNNING and SUCCEEDED, as a real ``noop`` run
   records them) plus one 1,000-node run, on SQLite and on PostgreSQL, and beside each a small
   store of 1,000 runs. They are seeded straight into the real schema (migrated by
   ``open_repository``) with SQLAlchemy Core ``executemany`` of up to 10,000 rows, rows built
   as ``new_run_rows`` builds them, then finished (SUCCEEDED, serialized NodeExecution and
   RunEvent records); seeding time is reported.
2. Through the real gRPC server (a ``ControlPlane`` in a child process serving that database,
   on a local 2-CPU Ray head): ListRuns p50/p99 at the first page and at deep pages (page
   tokens, page_size 50, with and without ``omit_nodes``), GetRun of the 1,000-node run and of
   a 10-node one, CreateRun of a one-node ``noop`` pipeline; per-item costs (µs per run
   listed, µs per node of GetRun) and the ratios deep page / first page and 100,000-run
   store / 1,000-run store, both measured in this run.
3. 100 concurrent WatchRun streams (one channel each, as 100 clients) on one 50-node ``noop``
   chain against 1 watcher of the same kind of run: the run's time after its first node
   (a 2 s ``sleep_seconds`` gate, so every watcher is attached before the events come) and
   the fan-out lag of each event (``RunEvent.time`` against the time each watcher received it).
4. 20 concurrent runs of a 50-node graph (root, 8 chains of 6, join) through the control plane
   against the same 20 graphs as raw ``@ray.remote`` tasks wired with ObjectRefs on the same
   head: the throughput ratio (nodes/s raypipe / nodes/s raw Ray).
5. Storage: bytes per run, per node execution and per event (SQLite: the file after a
   checkpoint, and ``dbstat`` per table with its indexes; PostgreSQL:
   ``pg_total_relation_size``).
6. Where the time of a deep ListRuns page goes: the SQL statements alone (the driver, no
   SQLAlchemy), ``repo.list_runs`` in-process (adds rows to protobuf), and the gRPC call
   (adds serialization, transport and the client's parsing); with the query plans
   (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN ANALYZE``).

PostgreSQL is the test server of ``scripts/ensure_postgres.sh``: ``RAYPIPE_TEST_POSTGRES_URL``
when set, else that script's URL when PostgreSQL is installed here; without either, the
PostgreSQL half is skipped (and said so). The benchmark creates its own databases there and
drops them at the end. The server runs with ``max_workers`` and the per-caller stream cap
raised for the 100 watchers (one thread each); everything else is ``raypipe serve``'s default
(MLflow tracking off). Nothing asserts a time.
"""

from __future__ import annotations

import contextlib
import cProfile
import glob
import math
import multiprocessing as mp
import os
import pstats
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import ray
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from control_plane.runs.events import artifact_message
from control_plane.server import ControlPlane, ServerConfig
from control_plane.storage._convert import from_micros, new_run_rows
from control_plane.storage._tables import node_executions, run_events, runs
from control_plane.storage.repository import NewRun, RunFilter
from control_plane.storage.sql import SqlRepository, open_repository
from ray_nodes.cluster import ensure_local_head
from ray_nodes.engine.artifacts import inline_output
from raypipe.v1 import (
    pipeline_pb2,
    pipeline_service_pb2_grpc,
    pipeline_spec_pb2,
    run_pb2,
    run_service_pb2_grpc,
)
from raypipe.v1 import pipeline_service_pb2 as ppb
from raypipe.v1 import run_service_pb2 as rpb
from tests.bench._config import repeats, sized

#: Runs of the large and of the small store (each also holds one BIG_RUN_NODES-node run).
RUNS, SMALL_RUNS = sized(100_000, 2_000), sized(1_000, 200)
NODES_PER_RUN = 10
BIG_RUN_NODES = 1_000
#: Runs per seeding transaction: 1,000 run rows, 10,000 node rows, 22,000 event rows.
RUNS_PER_BATCH = 1_000
#: Rows per executemany at most.
ROWS_PER_EXECUTE = 10_000
PAGE_SIZE = 50
SAMPLES = sized(200, 30)
GETRUN_SAMPLES = sized(100, 15)
CREATE_SAMPLES = sized(30, 5)
CREATE_WARM = 5
WATCHERS = sized(100, 10)
WATCH_NODES = 50
GATE_S = sized(2.0, 1.0)
CONCURRENT_RUNS = sized(20, 4)
CHAINS, CHAIN_LENGTH = 8, 6  # root + 8 x 6 + join = 50 nodes
GRAPH_NODES = CHAINS * CHAIN_LENGTH + 2
REPEATS = repeats(3)
POSTGRES_ENV = "RAYPIPE_TEST_POSTGRES_URL"
REPO_ROOT = Path(__file__).resolve().parents[2]

RunState = run_pb2.Run.State
NodeState = run_pb2.NodeExecution.State
EventType = run_pb2.RunEvent.Type


# --- figures -------------------------------------------------------------------------------------
def pct(samples: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def timed_ms(call: Callable[[], object], n: int, warm: int = 5) -> list[float]:
    """Milliseconds of ``n`` calls of ``call`` after ``warm`` unmeasured ones."""
    for _ in range(warm):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a table with right-aligned columns (the first left-aligned)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, r in enumerate(cells):
        line = "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
        )
        print(line.rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print(flush=True)


def ms(v: float) -> str:
    return f"{v:.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


# --- the stores ----------------------------------------------------------------------------------
@dataclass
class Store:
    """One seeded database."""

    label: str
    backend: str  # "sqlite" or "postgresql"
    url: str
    size: int  # runs of NODES_PER_RUN nodes (besides the big run)
    repo: SqlRepository
    insert_s: float = 0.0
    big_run: str = ""  # the BIG_RUN_NODES-node run's id
    ten_run: str = ""  # a NODES_PER_RUN-node run's id, near the newest end
    rows: dict[str, int] = field(default_factory=dict)


def _ts(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


#: The run events of a finished run: RUNNING, then each node RUNNING and SUCCEEDED, then
#: SUCCEEDED, with the engine's messages (ray_nodes/engine/supervisor.py).
EVENTS_PER_RUN = 2 + 2 * NODES_PER_RUN
_RUNNING, _SUCCEEDED = int(RunState.STATE_RUNNING), int(RunState.STATE_SUCCEEDED)
_NODE_RUNNING, _NODE_SUCCEEDED = int(NodeState.STATE_RUNNING), int(NodeState.STATE_SUCCEEDED)
_RUN_CHANGED = int(EventType.TYPE_RUN_STATE_CHANGED)
_NODE_CHANGED = int(EventType.TYPE_NODE_STATE_CHANGED)
#: A noop worker's peak resident memory, as the engine measures it.
_PEAK = {"peak_memory_bytes": 187_416_576.0}


class Records:
    """Serialized NodeExecution and RunEvent records of finished ``noop`` runs, with what the
    engine records (ray_nodes/engine/task.py): times, attempt, Ray task and node, the
    ``duration_seconds`` and ``peak_memory_bytes`` metrics, the inline output artifact.

    A record is its varying fields (sequence, times, duration, Ray task id) serialized,
    joined to the serialized constant fields: a valid encoding of the whole message (protobuf
    reads fields in any order; the first record of each kind is parsed back and compared),
    built several times faster than the message, so that seeding 3,000,000 records takes
    seconds.
    """

    def __init__(self, ray_node_id: str) -> None:
        inline = inline_output(None, kind="none")  # what a noop without inputs returns
        assert inline is not None
        output = artifact_message(inline)
        self._tail = run_pb2.NodeExecution(
            artifacts=[output], ray_node_id=ray_node_id, ray_node_address="10.0.0.2"
        )
        self._tail_bytes = self._tail.SerializeToString()
        self._heads: dict[str, bytes] = {}
        self._event_tails: dict[tuple[str, int], bytes] = {}
        self._checked = False

    def node(self, node_id: str, began_us: int, ended_us: int) -> bytes:
        head = self._heads.get(node_id)
        if head is None:
            head = self._heads[node_id] = run_pb2.NodeExecution(
                node_id=node_id, state=NodeState.STATE_SUCCEEDED, attempt=1
            ).SerializeToString()
        middle = run_pb2.NodeExecution(
            start_time=_ts(began_us),
            end_time=_ts(ended_us),
            metrics={"duration_seconds": (ended_us - began_us) / 1e6, **_PEAK},
            ray_task_id=os.urandom(24).hex(),
        )
        data = head + middle.SerializeToString() + self._tail_bytes
        if not self._checked:
            whole = run_pb2.NodeExecution(
                node_id=node_id, state=NodeState.STATE_SUCCEEDED, attempt=1
            )
            whole.MergeFrom(middle)
            whole.MergeFrom(self._tail)
            assert run_pb2.NodeExecution.FromString(data) == whole
        return data

    def event(self, sequence: int, us: int, node_id: str, state: int) -> bytes:
        """A run's state change (``node_id`` empty) or a node's (RUNNING or SUCCEEDED)."""
        key = (node_id, state)
        tail = self._event_tails.get(key)
        if tail is None:
            if node_id:
                succeeded = state == _NODE_SUCCEEDED
                message = run_pb2.RunEvent(
                    type=_NODE_CHANGED,  # type: ignore[arg-type]
                    node_id=node_id,
                    run_state=_RUNNING,  # type: ignore[arg-type]
                    node_state=state,  # type: ignore[arg-type]
                    message=f"node {node_id} {'succeeded' if succeeded else 'running (attempt 1)'}",
                    metrics={"duration_seconds": 0.008, **_PEAK} if succeeded else {},
                )
            else:
                message = run_pb2.RunEvent(
                    type=_RUN_CHANGED,  # type: ignore[arg-type]
                    run_state=state,  # type: ignore[arg-type]
                    message="handed to Ray" if state == _RUNNING else "run succeeded",
                )
            tail = self._event_tails[key] = message.SerializeToString()
        data = run_pb2.RunEvent(sequence=sequence, time=_ts(us)).SerializeToString() + tail
        if not self._checked:
            whole = run_pb2.RunEvent.FromString(tail)
            whole.sequence = sequence
            whole.time.CopyFrom(_ts(us))
            assert run_pb2.RunEvent.FromString(data) == whole
        return data

    def run_rows(
        self, run_id: str, pipeline_id: str, node_ids: Sequence[str], created_us: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The ``runs``, ``node_executions`` and ``run_events`` rows of one finished run,
        built as ``new_run_rows`` builds a new run's, then finished as the supervisor would."""
        row, nodes = new_run_rows(
            NewRun(
                run_id=run_id,
                pipeline_id=pipeline_id,
                version_number=1,
                parameters={},
                node_ids=node_ids,
            ),
            None,
            from_micros(created_us),
        )
        start_us = created_us + 5_000
        events: list[dict[str, Any]] = []

        def event(us: int, node_id: str, state: int) -> None:
            sequence = len(events) + 1
            data = self.event(sequence, us, node_id, state)
            events.append({"run_id": run_id, "sequence": sequence, "data": data})

        event(start_us, "", _RUNNING)
        t = start_us
        for node in nodes:
            node_id = node["node_id"]
            began, ended = t + 1_000, t + 9_000
            t = ended
            node["state"] = _NODE_SUCCEEDED
            node["data"] = self.node(node_id, began, ended)
            event(began, node_id, _NODE_RUNNING)
            event(ended, node_id, _NODE_SUCCEEDED)
        end_us = t + 2_000
        event(end_us, "", _SUCCEEDED)
        self._checked = True
        row.update(
            state=_SUCCEEDED,
            start_time=from_micros(start_us),
            end_time=from_micros(end_us),
            update_time=from_micros(end_us),
            engine_cursor=len(events),
            next_event_sequence=len(events) + 1,
        )
        return row, nodes, events


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), ROWS_PER_EXECUTE):
        yield rows[i : i + ROWS_PER_EXECUTE]


def insert(store: Store, batch: tuple[list[Any], list[Any], list[Any]]) -> None:
    """One transaction of bulk inserts (executemany of up to ROWS_PER_EXECUTE rows)."""
    t0 = time.perf_counter()
    with store.repo.engines.writer.begin() as conn:
        for table_, rows in zip((runs, node_executions, run_events), batch, strict=True):
            for chunk in _chunks(rows):
                conn.execute(table_.insert(), chunk)
    store.insert_s += time.perf_counter() - t0


def _spec(node_ids: Sequence[str]) -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    for node_id in node_ids:
        spec.nodes.add(id=node_id, type="noop")
    return spec


def seed(stores: Sequence[Store], size: int) -> float:
    """Seed ``stores`` with the same rows: the big run (oldest), then ``size`` runs of
    NODES_PER_RUN nodes, one second apart. Returns the seconds spent building rows."""
    small_ids = [f"n{i}" for i in range(NODES_PER_RUN)]
    big_ids = [f"n{i}" for i in range(BIG_RUN_NODES)]
    for store in stores:
        for pipeline_id, ids in (("seeded", small_ids), ("wide", big_ids)):
            store.repo.create_pipeline(pipeline_id, display_name="", description="", labels={})
            store.repo.create_version(
                pipeline_id, _spec(ids), spec_digest="0" * 64, description="", make_default=True
            )
    records = Records(os.urandom(28).hex())
    base_us = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    build_s = 0.0
    t0 = time.perf_counter()
    big_id = uuid.uuid4().hex
    row, nodes, events = records.run_rows(big_id, "wide", big_ids, base_us)
    build_s += time.perf_counter() - t0
    for store in stores:
        store.big_run = big_id
        insert(store, ([row], nodes, events))
    ten_id = ""
    for first in range(0, size, RUNS_PER_BATCH):
        t0 = time.perf_counter()
        batch: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for i in range(first, min(size, first + RUNS_PER_BATCH)):
            run_id = uuid.uuid4().hex
            created_us = base_us + (i + 1) * 1_000_000
            row, nodes, events = records.run_rows(run_id, "seeded", small_ids, created_us)
            batch[0].append(row)
            batch[1].extend(nodes)
            batch[2].extend(events)
            if i == size - 10:
                ten_id = run_id
        build_s += time.perf_counter() - t0
        for store in stores:
            insert(store, batch)
    for store in stores:
        store.ten_run = ten_id
        with store.repo.engines.pool.connect() as conn:
            for name in ("runs", "node_executions", "run_events"):
                store.rows[name] = int(
                    conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
                )
    return build_s


def finish_postgres(store: Store) -> float:
    """VACUUM ANALYZE the run tables (what autovacuum does after a bulk load); seconds."""
    t0 = time.perf_counter()
    engine = store.repo.engines.pool.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for name in ("runs", "node_executions", "run_events"):
            conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
    return time.perf_counter() - t0


def storage(store: Store) -> list[tuple[str, int, int, int]]:
    """(table, rows, bytes with its indexes, bytes of its indexes) for the run tables; for
    SQLite also the whole file after a checkpoint."""
    out = []
    names = ("runs", "node_executions", "run_events")
    with store.repo.engines.pool.connect() as conn:
        if store.backend == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            owner: dict[str, str] = {
                name: table_name
                for name, table_name in conn.exec_driver_sql(
                    "SELECT name, tbl_name FROM sqlite_schema"
                )
            }
            sizes: dict[str, list[int]] = {n: [0, 0] for n in names}
            for name, size in conn.exec_driver_sql(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
            ):
                table_ = owner.get(name, name)
                if table_ in sizes:
                    sizes[table_][0] += size
                    if name != table_:
                        sizes[table_][1] += size
            for n in names:
                out.append((n, store.rows[n], sizes[n][0], sizes[n][1]))
            database = store.repo.engines.pool.url.database or ""
            out.append(("(whole file)", store.rows["runs"], os.path.getsize(database), 0))
        else:
            for n in names:
                total, indexes = conn.execute(
                    sa.text("SELECT pg_total_relation_size(:t), pg_indexes_size(:t)"), {"t": n}
                ).one()
                out.append((n, store.rows[n], int(total), int(indexes)))
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            out.append(("(whole database)", store.rows["runs"], int(size), 0))
    return out


# --- PostgreSQL ------------------------------------------------------------------------------------
def postgres_admin_url() -> str:
    """The admin URL of the test PostgreSQL server, or "" when there is none here."""
    url = os.environ.get(POSTGRES_ENV, "")
    if url:
        return url
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        return ""  # not installed: the script would install it; not a benchmark's business
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure_postgres.sh"), "--url"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def create_database(admin_url: str, name: str) -> str:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(20):
            try:
                with admin.connect() as conn:
                    force = " WITH (FORCE)" if attempt == 0 else ""
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
                return
            except sa.exc.OperationalError:
                time.sleep(0.5)
        print(f"warning: could not drop the benchmark database {name}")
    finally:
        admin.dispose()


# --- the server and its client ---------------------------------------------------------------------
def _serve(
    ports: Any, asks: Any, answers: Any, data_dir: str, db_url: str, ray_address: str
) -> None:
    """The control plane in its own process, as `raypipe serve` runs it (MLflow tracking off),
    with room for WATCHERS streams from one caller.

    Its repository's ``list_runs`` is timed: each message on ``asks`` is answered on
    ``answers`` with the (omit_nodes, ms) of the calls since the previous one, so the report
    can tell the repository's time inside the server from the rest of a ListRuns call.
    """
    plane = ControlPlane(
        ServerConfig(
            data_dir=Path(data_dir),
            port=0,
            db_url=db_url,
            ray_address=ray_address,
            max_workers=WATCHERS + 64,
            max_streams_per_principal=0,
        )
    )
    port = plane.start()
    repo = plane.repository
    assert repo is not None
    inner = repo.list_runs
    timings: list[tuple[bool, float]] = []

    def list_runs(**kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(**kwargs)
        finally:
            timings.append((bool(kwargs.get("omit_nodes")), (time.perf_counter() - t0) * 1000))

    repo.list_runs = list_runs  # type: ignore[method-assign]

    def answer() -> None:
        while True:
            asks.get()
            answers.put(timings[:])
            del timings[:]

    threading.Thread(target=answer, daemon=True).start()
    ports.put(port)
    plane.wait()


class Api:
    def __init__(self, port: int, asks: Any, answers: Any) -> None:
        self._asks, self._answers = asks, answers
        self.target = f"127.0.0.1:{port}"
        self.channel = grpc.insecure_channel(self.target)
        self.pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self.channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)

    def register(self, pipeline_id: str, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        self.pipelines.CreatePipeline(ppb.CreatePipelineRequest(pipeline_id=pipeline_id))
        self.pipelines.CreatePipelineVersion(
            ppb.CreatePipelineVersionRequest(
                parent=f"pipelines/{pipeline_id}",
                pipeline_version=pipeline_pb2.PipelineVersion(spec=spec),
            )
        )

    def create(self, pipeline_id: str) -> run_pb2.Run:
        request = rpb.CreateRunRequest(run=run_pb2.Run(pipeline=f"pipelines/{pipeline_id}"))
        return self.runs.CreateRun(request).run

    def wait(self, name: str, stub: Any = None) -> tuple[int, float]:
        """Follow the run's state changes to its end: (final state, time.time() of the end)."""
        stub = stub or self.runs
        request = rpb.WatchRunRequest(name=name, event_types=[EventType.TYPE_RUN_STATE_CHANGED])
        state = 0
        for response in stub.WatchRun(request):
            if response.HasField("run"):
                state = response.run.state
        return state, time.time()

    def repo_timings(self) -> list[float]:
        """Milliseconds of the server's ``list_runs`` calls since the last time asked."""
        self._asks.put(None)
        return [t for _, t in self._answers.get(timeout=60)]

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def serving(store: Store, tmp: Path, ray_address: str) -> Iterator[tuple[Api, float]]:
    """The control plane on ``store`` in a child process: (its client, seconds to serving)."""
    ctx = mp.get_context("spawn")
    ports, asks, answers = ctx.Queue(), ctx.Queue(), ctx.Queue()
    data_dir = tmp / f"server-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    server = ctx.Process(
        target=_serve,
        args=(ports, asks, answers, str(data_dir), store.url, ray_address),
        daemon=True,
    )
    server.start()
    api = None
    try:
        port = ports.get(timeout=180)
        started = time.perf_counter() - t0
        api = Api(port, asks, answers)
        yield api, started
    finally:
        if api is not None:
            api.close()
        server.terminate()  # SIGTERM: the server drains and closes its storage
        server.join(timeout=60)
        if server.is_alive():
            server.kill()
            server.join()


# --- 2 and 6: the API on a store -------------------------------------------------------------------
@dataclass
class ApiFigures:
    started_s: float = 0.0
    first: dict[bool, list[float]] = field(default_factory=dict)  # omit_nodes -> ms
    deep: dict[bool, list[float]] = field(default_factory=dict)
    walk: list[float] = field(default_factory=list)  # omit_nodes, every page in order
    walk_s: float = 0.0
    get_big: list[float] = field(default_factory=list)
    get_ten: list[float] = field(default_factory=list)
    create: list[float] = field(default_factory=list)
    repo_deep: dict[bool, list[float]] = field(default_factory=dict)
    sql_deep: dict[bool, list[float]] = field(default_factory=dict)
    server_repo_deep: dict[bool, list[float]] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)  # function, share of time
    plans: list[tuple[str, list[str]]] = field(default_factory=list)
    real_run: tuple[int, int, float] = (0, 0, 0.0)  # events, nodes, bytes per node record


def _cycle(calls: Sequence[Callable[[], object]]) -> Callable[[], object]:
    """A call that makes each of ``calls`` in turn."""
    counter = iter(range(10**12))
    return lambda: calls[next(counter) % len(calls)]()


def measure_api(store: Store, api: Api) -> tuple[ApiFigures, str]:
    """ListRuns, GetRun and CreateRun through gRPC; returns the figures and a deep token."""
    fig = ApiFigures()
    runs_api = api.runs

    def list_call(token: str, omit: bool) -> Callable[[], object]:
        request = rpb.ListRunsRequest(page_size=PAGE_SIZE, page_token=token, omit_nodes=omit)
        return lambda: runs_api.ListRuns(request)

    for omit in (False, True):
        fig.first[omit] = timed_ms(list_call("", omit), SAMPLES, warm=20)
    # Walk every page (omit_nodes), keeping the tokens: a token does not depend on omit_nodes.
    tokens = [""]
    request = rpb.ListRunsRequest(page_size=PAGE_SIZE, omit_nodes=True)
    t_walk = time.perf_counter()
    listed = 0
    while True:
        request.page_token = tokens[-1]
        t0 = time.perf_counter()
        response = runs_api.ListRuns(request)
        fig.walk.append((time.perf_counter() - t0) * 1000)
        listed += len(response.runs)
        if not response.next_page_token:
            break
        tokens.append(response.next_page_token)
    fig.walk_s = time.perf_counter() - t_walk
    assert listed == store.rows["runs"], (listed, store.rows["runs"])
    # Deep pages: the last tenth of the walk, without the last two (the 1,000-node run is the
    # oldest, on the last page).
    pages = len(tokens)
    deep = tokens[max(1, pages - pages // 10 - 2) : pages - 2] or tokens[-2:-1]
    for omit in (False, True):
        api.repo_timings()  # forget the earlier calls
        fig.deep[omit] = timed_ms(_cycle([list_call(t, omit) for t in deep]), SAMPLES, warm=20)
        fig.server_repo_deep[omit] = api.repo_timings()[20:]
    big = rpb.GetRunRequest(name=f"runs/{store.big_run}")
    ten = rpb.GetRunRequest(name=f"runs/{store.ten_run}")
    assert len(runs_api.GetRun(big).run.nodes) == BIG_RUN_NODES
    fig.get_big = timed_ms(lambda: runs_api.GetRun(big), GETRUN_SAMPLES)
    fig.get_ten = timed_ms(lambda: runs_api.GetRun(ten), SAMPLES, warm=20)
    # CreateRun of a one-node pipeline registered through the API; each run is followed to its
    # end before the next, so every call meets an idle server.
    api.register("one", _spec(["only"]))
    last = ""
    for i in range(CREATE_SAMPLES + CREATE_WARM):
        t0 = time.perf_counter()
        run = api.create("one")
        elapsed = (time.perf_counter() - t0) * 1000
        if i >= CREATE_WARM:
            fig.create.append(elapsed)
        state, _ = api.wait(run.name)
        assert state == RunState.STATE_SUCCEEDED, RunState.Name(state)
        last = run.name
    # What a real run stored, beside the seeded ones.
    real = runs_api.GetRun(rpb.GetRunRequest(name=last)).run
    events = store.repo.list_events(last.removeprefix("runs/"))
    size = statistics.mean(len(n.SerializeToString()) for n in real.nodes)
    fig.real_run = (len(events), len(real.nodes), size)
    return fig, deep[len(deep) // 2]


def measure_repo(store: Store, fig: ApiFigures, token: str) -> None:
    """The deep page in-process: ``repo.list_runs``, and its SQL statements on the driver."""
    repo = store.repo
    for omit in (False, True):

        def call(omit: bool = omit) -> object:
            return repo.list_runs(
                page_size=PAGE_SIZE, page_token=token, filter=RunFilter(), omit_nodes=omit
            )

        fig.repo_deep[omit] = timed_ms(call, SAMPLES, warm=20)
        if not omit:
            fig.profile = profile(call, SAMPLES)
        statements: list[tuple[str, Any]] = []

        def capture(
            conn: Any,
            cursor: Any,
            statement: str,
            parameters: Any,
            *_: Any,
            statements: list[tuple[str, Any]] = statements,
        ) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                statements.append((statement, parameters))

        sa.event.listen(repo.engines.pool, "before_cursor_execute", capture)
        try:
            call()
        finally:
            sa.event.remove(repo.engines.pool, "before_cursor_execute", capture)
        raw = repo.engines.pool.raw_connection()
        try:
            cursor = raw.cursor()

            def run_sql(cursor: Any = cursor, statements: list[Any] = statements) -> None:
                for statement, parameters in statements:
                    cursor.execute(statement, parameters)
                    cursor.fetchall()

            fig.sql_deep[omit] = timed_ms(run_sql, SAMPLES, warm=20)
            if not omit:
                for statement, parameters in statements:
                    what = "runs page" if "FROM runs" in statement else "the page's nodes"
                    if store.backend == "sqlite":
                        cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                        plan = [str(r[-1]) for r in cursor.fetchall()]
                    else:
                        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                        plan = [str(r[0]) for r in cursor.fetchall()]
                    fig.plans.append((what, plan))
            cursor.close()
            raw.rollback()
        finally:
            raw.close()


def profile(call: Callable[[], object], n: int, top: int = 8) -> list[tuple[str, float]]:
    """The functions that take the most of ``n`` calls' time (their own time, under
    cProfile, which inflates small functions): (name, share)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        call()
    profiler.disable()
    # (file, line, name) -> (primitive calls, calls, own time, cumulative time, callers)
    stats: Any = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    out = []
    for (file, line, name), value in ranked:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else "built-in"
        out.append((f"{name} ({where})", value[2] / total))
    return out


# --- 3: watchers -------------------------------------------------------------------------------------
@dataclass
class WatchFigures:
    after_gate_s: float  # the gate node's SUCCEEDED event -> the last watcher received SUCCEEDED
    run_after_gate_s: float  # the same on the server's clock: run end_time - gate end_time
    create_to_end_s: float  # CreateRun -> the last watcher received SUCCEEDED
    lags_ms: list[float]
    attached_in_time: int


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def watch_once(api: Api, stubs: Sequence[Any], watchers: int) -> WatchFigures:
    t_create = time.time()
    run = api.create("watch")
    results: list[tuple[float, float, list[float], float]] = [(0.0, 0.0, [], 0.0)] * watchers

    def follow(i: int) -> None:
        lags: list[float] = []
        snapshot_at = done_at = gate_at = 0.0
        for response in stubs[i].WatchRun(rpb.WatchRunRequest(name=run.name)):
            now = time.time()
            event = response.event
            if event.type == EventType.TYPE_SNAPSHOT:
                snapshot_at = now
                continue
            lags.append((now - _seconds(event.time)) * 1000)
            if event.node_id == "n0" and event.node_state == NodeState.STATE_SUCCEEDED:
                gate_at = _seconds(event.time)
            if event.type == EventType.TYPE_RUN_STATE_CHANGED and event.run_state in (
                RunState.STATE_SUCCEEDED,
                RunState.STATE_FAILED,
                RunState.STATE_CANCELLED,
            ):
                done_at = now
        results[i] = (snapshot_at, done_at, lags, gate_at)

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(watchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = api.runs.GetRun(rpb.GetRunRequest(name=run.name)).run
    assert final.state == RunState.STATE_SUCCEEDED, RunState.Name(final.state)
    gate_end = _seconds(final.nodes[0].end_time)
    gate_seen = [r[3] for r in results if r[3]]
    gate_event = min(gate_seen) if gate_seen else gate_end
    last_done = max(r[1] for r in results)
    return WatchFigures(
        after_gate_s=last_done - gate_event,
        run_after_gate_s=_seconds(final.end_time) - gate_end,
        create_to_end_s=last_done - t_create,
        lags_ms=[lag for r in results for lag in r[2]],
        attached_in_time=sum(1 for r in results if 0 < r[0] < gate_end),
    )


def measure_watchers(api: Api) -> dict[int, list[WatchFigures]]:
    spec = pipeline_spec_pb2.PipelineSpec()
    for i in range(WATCH_NODES):
        node = spec.nodes.add(id=f"n{i}", type="noop", depends_on=[f"n{i - 1}"] if i else [])
        if i == 0:
            node.params.update({"sleep_seconds": GATE_S})
    api.register("watch", spec)
    channels = [grpc.insecure_channel(api.target) for _ in range(WATCHERS)]
    try:
        stubs = [run_service_pb2_grpc.RunServiceStub(c) for c in channels]
        for channel in channels:  # connect every channel before anything is measured
            grpc.channel_ready_future(channel).result(timeout=30)
        watch_once(api, stubs, 1)  # warm-up
        out: dict[int, list[WatchFigures]] = {1: [], WATCHERS: []}
        for _ in range(REPEATS):
            for n in (1, WATCHERS):
                out[n].append(watch_once(api, stubs, n))
        return out
    finally:
        for c in channels:
            c.close()


# --- 4: concurrent runs against raw Ray --------------------------------------------------------------
def _nothing(*_: object) -> None:
    return None


# Ray's stubs type a remote function of *args as taking no arguments.
_raw: Any = ray.remote(num_cpus=1)(_nothing)


def graph_spec() -> pipeline_spec_pb2.PipelineSpec:
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.nodes.add(id="root", type="noop")
    ends = []
    for c in range(CHAINS):
        previous = "root"
        for k in range(CHAIN_LENGTH):
            node_id = f"c{c}_{k}"
            spec.nodes.add(id=node_id, type="noop", depends_on=[previous])
            previous = node_id
        ends.append(previous)
    spec.nodes.add(id="join", type="noop", depends_on=ends)
    assert len(spec.nodes) == GRAPH_NODES
    return spec


def raw_graphs(n: int) -> float:
    started = time.perf_counter()
    joins = []
    for _ in range(n):
        root = _raw.remote()
        ends = []
        for _ in range(CHAINS):
            ref = root
            for _ in range(CHAIN_LENGTH):
                ref = _raw.remote(ref)
            ends.append(ref)
        joins.append(_raw.remote(*ends))
    ray.get(joins)
    return time.perf_counter() - started


def raypipe_graphs(api: Api, n: int) -> float:
    started = time.perf_counter()
    names = [api.create("graph").name for _ in range(n)]
    states: list[int] = [0] * n

    def wait(i: int) -> None:
        states[i] = api.wait(names[i])[0]

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert all(s == RunState.STATE_SUCCEEDED for s in states), states
    return elapsed


def measure_concurrent(api: Api) -> tuple[list[float], list[float]]:
    api.register("graph", graph_spec())
    raw_graphs(2)  # warm-up: workers started on both sides
    raypipe_graphs(api, 2)
    raw, ours = [], []
    for _ in range(REPEATS):
        raw.append(raw_graphs(CONCURRENT_RUNS))
        ours.append(raypipe_graphs(api, CONCURRENT_RUNS))
    return raw, ours


# --- the report ------------------------------------------------------------------------------------
def report_api(pairs: Sequence[tuple[Store, ApiFigures, Store, ApiFigures]]) -> None:
    print("## 2. The API through gRPC (ms; p50 / p99)")
    rows: list[tuple[str, ...]] = []
    for _small, sf, big, bf in pairs:
        for label, key in (
            ("ListRuns first page", "first"),
            ("ListRuns deep page", "deep"),
        ):
            for omit in (False, True):
                s, b = getattr(sf, key)[omit], getattr(bf, key)[omit]
                name = f"{label}{', omit_nodes' if omit else ''}"
                rows.append(
                    (
                        f"{big.backend}: {name}",
                        f"{ms(p50(s))} / {ms(pct(s, 0.99))}",
                        f"{ms(p50(b))} / {ms(pct(b, 0.99))}",
                        ratio(p50(b), p50(s)),
                        f"{p50(b) * 1000 / PAGE_SIZE:.0f}",
                    )
                )
        for name, s, b, per in (
            (f"GetRun, {BIG_RUN_NODES:,} nodes", sf.get_big, bf.get_big, BIG_RUN_NODES),
            (f"GetRun, {NODES_PER_RUN} nodes", sf.get_ten, bf.get_ten, NODES_PER_RUN),
            ("CreateRun, 1 node", sf.create, bf.create, 0),
        ):
            rows.append(
                (
                    f"{big.backend}: {name}",
                    f"{ms(p50(s))} / {ms(pct(s, 0.99))}",
                    f"{ms(p50(b))} / {ms(pct(b, 0.99))}",
                    ratio(p50(b), p50(s)),
                    f"{p50(b) * 1000 / per:.1f} per node" if per else "",
                )
            )
    small0, _, big0, _ = pairs[0]
    table(
        (
            "call",
            f"{small0.size:,} runs",
            f"{big0.size:,} runs",
            "ratio (p50)",
            f"µs per run listed / per node ({big0.size:,})",
        ),
        rows,
    )
    rows = []
    for small, sf, big, bf in pairs:
        for store, f in ((small, sf), (big, bf)):
            marginal = (p50(f.get_big) - p50(f.get_ten)) * 1000 / (BIG_RUN_NODES - NODES_PER_RUN)
            tenth = max(1, len(f.walk) // 10)
            rows.append(
                (
                    f"{store.backend}, {store.size:,} runs",
                    ratio(p50(f.deep[False]), p50(f.first[False])),
                    ratio(p50(f.deep[True]), p50(f.first[True])),
                    f"{ms(p50(f.walk[:tenth]))} / {ms(p50(f.walk[-tenth - 2 : -2] or f.walk))}",
                    f"{len(f.walk):,} pages in {f.walk_s:.1f} s, {f.walk_s * 1e6 / store.rows['runs']:.0f} µs/run",
                    f"{marginal:.1f}",
                    f"{f.started_s:.1f}",
                )
            )
    table(
        (
            "store",
            "deep/first",
            "deep/first, omit_nodes",
            "walk: first / last tenth p50 ms",
            "walking every page (omit_nodes)",
            "GetRun µs per extra node",
            "server start s",
        ),
        rows,
    )
    for small, sf, _big, _bf in pairs[:1]:
        events, nodes, size = sf.real_run
        seeded = statistics.mean(
            len(n.SerializeToString())
            for n in small.repo.get_run(small.ten_run).nodes  # type: ignore[union-attr]
        )
        print(
            f"a real one-node noop run stored {events} events for {nodes} node (seeded runs: "
            f"{EVENTS_PER_RUN} for {NODES_PER_RUN}); node record {size:.0f} bytes real, "
            f"{seeded:.0f} seeded\n"
        )


def report_where(pairs: Sequence[tuple[Store, ApiFigures, Store, ApiFigures]]) -> None:
    print("## 6. Where the time of a deep ListRuns page goes (ms, page of 50)")
    print(
        "p50s of the same deep pages: SQL = the page's SELECTs on the DB-API driver (no "
        "SQLAlchemy) in this process; repo = repo.list_runs in this process (adds the "
        "transaction, the pool and the rows' conversion to Run messages); in the server = the "
        "same repo.list_runs timed inside the serving process, among its threads; call = the "
        "gRPC call (adds the handler's response, serialization, transport, the client's "
        "parsing).\n"
    )
    rows = []
    for _small, _sf, big, bf in pairs:
        for omit in (False, True):
            sql, repo = p50(bf.sql_deep[omit]), p50(bf.repo_deep[omit])
            server, call = p50(bf.server_repo_deep[omit]), p50(bf.deep[omit])
            parts = (sql, repo - sql, server - repo, call - server)
            rows.append(
                (
                    f"{big.backend}, {big.size:,} runs{', omit_nodes' if omit else ''}",
                    *(ms(v) for v in parts),
                    ms(call),
                    " / ".join(f"{v / call:.0%}" for v in parts),
                )
            )
    table(
        (
            "store",
            "SQL",
            "+ repo in-process",
            "+ repo in the server",
            "+ gRPC and the client",
            "= call",
            "shares",
        ),
        rows,
    )
    for _small, _sf, big, bf in pairs:
        print(f"repo.list_runs of a deep page with nodes, {big.backend}: own time under cProfile")
        for name, share in bf.profile:
            print(f"  {share:6.1%}  {name}")
        print()
    for _small, _sf, big, bf in pairs:
        print(f"query plans, deep page, {big.backend} ({big.size:,} runs):")
        for what, plan in bf.plans:
            print(f"  {what}:")
            for line in plan:
                print(f"    {line[:150]}{' ...' if len(line) > 150 else ''}")
            text = " ".join(plan)
            if (
                "Seq Scan" in text
                or ("SCAN " in text and "USING" not in text)
                or "TEMP B-TREE" in text
                or " Sort " in f" {text} "
            ):
                print("    NOTE: this plan scans a table or sorts instead of walking an index")
        print()


def report_storage(seeding: Sequence[tuple[Store, float, float]]) -> None:
    """``seeding``: (store, seconds building its rows, seconds of VACUUM ANALYZE)."""
    print("## 1. Seeding")
    table(
        ("store", "rows (runs / nodes / events)", "insert s", "rows/s", "then"),
        [
            (
                s.label,
                f"{s.rows['runs']:,} / {s.rows['node_executions']:,} / {s.rows['run_events']:,}",
                f"{s.insert_s:.1f}",
                f"{sum(s.rows.values()) / s.insert_s:,.0f}",
                f"VACUUM ANALYZE {extra:.1f} s" if extra else "",
            )
            for s, _build, extra in seeding
        ],
    )
    builds = {f"{s.size:,} runs": build for s, build, _ in seeding}
    print(
        "building the rows (protobuf records, new_run_rows), once for the stores of a size: "
        + ", ".join(f"{k}: {v:.1f} s" for k, v in builds.items())
        + "\n"
    )
    stores = [s for s, _, _ in seeding]
    print("## 5. Storage")
    rows = []
    for s in stores:
        for name, count, total, indexes in storage(s):
            rows.append(
                (
                    f"{s.label}: {name}",
                    f"{count:,}",
                    mib(total),
                    f"{indexes / total:.0%}" if indexes else "",
                    f"{total / count:,.0f}",
                )
            )
    table(("store: table", "rows", "MiB", "of which indexes", "bytes per row (per run)"), rows)


def report_watch(w: dict[int, list[WatchFigures]]) -> None:
    print(f"## 3. WatchRun fan-out: a {WATCH_NODES}-node noop chain (first node sleeps {GATE_S} s)")
    rows = []
    for n in (1, WATCHERS):
        figs = w[n]
        lags = [lag for f in figs for lag in f.lags_ms]
        rows.append(
            (
                f"{n} watcher{'s' if n > 1 else ''}",
                f"{p50([f.after_gate_s for f in figs]):.3f}",
                f"{p50([f.run_after_gate_s for f in figs]):.3f}",
                f"{p50([f.create_to_end_s for f in figs]):.3f}",
                f"{ms(p50(lags))} / {ms(pct(lags, 0.99))}",
                f"{len(lags):,}",
                f"{min(f.attached_in_time for f in figs)}/{n}",
            )
        )
    table(
        (
            "watchers",
            "after the gate, last watcher s",
            "run after the gate (server) s",
            "CreateRun -> SUCCEEDED s",
            "fan-out lag p50 / p99 ms",
            "events received",
            "attached in time",
        ),
        rows,
    )

    def med(n: int, key: str) -> float:
        return p50([getattr(f, key) for f in w[n]])

    lag1 = [lag for f in w[1] for lag in f.lags_ms]
    lagn = [lag for f in w[WATCHERS] for lag in f.lags_ms]
    print(
        f"{WATCHERS} watchers / 1: after the gate {ratio(med(WATCHERS, 'after_gate_s'), med(1, 'after_gate_s'))}, "
        f"run on the server {ratio(med(WATCHERS, 'run_after_gate_s'), med(1, 'run_after_gate_s'))}, "
        f"CreateRun -> SUCCEEDED {ratio(med(WATCHERS, 'create_to_end_s'), med(1, 'create_to_end_s'))}, "
        f"lag p50 {ratio(p50(lagn), p50(lag1))}, p99 {ratio(pct(lagn, 0.99), pct(lag1, 0.99))}\n"
    )


def report_concurrent(raw: list[float], ours: list[float]) -> None:
    nodes = CONCURRENT_RUNS * GRAPH_NODES
    print(
        f"## 4. {CONCURRENT_RUNS} concurrent runs of a {GRAPH_NODES}-node graph (root, {CHAINS} chains "
        f"of {CHAIN_LENGTH}, join): {nodes:,} nodes, median of {REPEATS}"
    )
    r, o = p50(raw), p50(ours)
    table(
        ("side", "s", "nodes/s", "throughput ratio"),
        [
            ("raw Ray tasks", f"{r:.2f}", f"{nodes / r:,.0f}", "1"),
            ("raypipe runs", f"{o:.2f}", f"{nodes / o:,.0f}", ratio(nodes / o, nodes / r)),
        ],
    )


# --- main ------------------------------------------------------------------------------------------
def main() -> None:
    started = time.perf_counter()
    admin = postgres_admin_url()
    databases: list[str] = []
    head = None
    stores: list[Store] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            by_size: dict[int, list[Store]] = {SMALL_RUNS: [], RUNS: []}
            for size in (SMALL_RUNS, RUNS):
                url = f"sqlite:///{tmp / f'sqlite-{size}.db'}"
                sqlite = Store(f"SQLite, {size:,} runs", "sqlite", url, size, open_repository(url))
                by_size[size].append(sqlite)
                stores.append(sqlite)
                if admin:
                    name = f"raypipe_bench_{uuid.uuid4().hex[:10]}"
                    databases.append(name)
                    url = create_database(admin, name)
                    label = f"PostgreSQL, {size:,} runs"
                    postgres = Store(label, "postgresql", url, size, open_repository(url))
                    by_size[size].append(postgres)
                    stores.append(postgres)
            if not admin:
                print(
                    f"PostgreSQL skipped: set {POSTGRES_ENV}="
                    "$(bash scripts/ensure_postgres.sh --url) to measure it too\n"
                )
            seeding: list[tuple[Store, float, float]] = []
            for size in (SMALL_RUNS, RUNS):
                build = seed(by_size[size], size)
                for store in by_size[size]:
                    extra = finish_postgres(store) if store.backend == "postgresql" else 0.0
                    seeding.append((store, build, extra))
            print(f"(seeded in {time.perf_counter() - started:.0f} s)\n", flush=True)
            report_storage(seeding)

            head = ensure_local_head(tmp / "ray", num_cpus=2, dashboard=False)
            # The raw side runs on the same head, not on a private Ray instance of its own.
            ray.init(address=head.address, log_to_driver=False)
            pairs = []
            watch: dict[int, list[WatchFigures]] = {}
            raw: list[float] = []
            ours: list[float] = []
            for backend in ("sqlite", "postgresql"):
                pair: list[tuple[Store, ApiFigures]] = []
                for size in (SMALL_RUNS, RUNS):
                    found = [s for s in by_size[size] if s.backend == backend]
                    if not found:
                        continue
                    store = found[0]
                    with serving(store, tmp, head.address) as (api, started_s):
                        fig, token = measure_api(store, api)
                        fig.started_s = started_s
                        measure_repo(store, fig, token)
                        if backend == "sqlite" and size == RUNS:
                            watch = measure_watchers(api)
                            raw, ours = measure_concurrent(api)
                    pair.append((store, fig))
                    print(
                        f"({store.label} measured at {time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
                if len(pair) == 2:
                    pairs.append((pair[0][0], pair[0][1], pair[1][0], pair[1][1]))
            print()
            report_api(pairs)
            report_watch(watch)
            report_concurrent(raw, ours)
            report_where(pairs)
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if head is not None:
                head.stop()
            for store in stores:
                store.repo.close()
            for name in databases:
                drop_database(admin, name)
    print(f"(bench_scale took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
