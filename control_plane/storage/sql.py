"""The SQL implementation of :class:`~control_plane.storage.repository.Repository`.

One implementation serves SQLite (the embedded default: a file in the data directory) and
PostgreSQL (several control-plane replicas sharing one database), with SQLAlchemy Core and
the schema of :mod:`._tables`, created by the Alembic migrations in ``migrations/``. Each
method is one transaction of one of the kinds :mod:`._engine` describes: a lone read, a
snapshot read, or a write that holds its locks until commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import filelock
import sqlalchemy as sa

from control_plane.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from control_plane.storage import _migrate
from control_plane.storage._convert import (
    new_run_rows,
    pipeline_from_row,
    pipeline_name,
    run_from_row,
    to_micros,
    version_from_row,
    version_name,
)
from control_plane.storage._engine import create_engines, normalize_url
from control_plane.storage._fastread import FastLookup
from control_plane.storage._owner import PipelineCache, claim_sqlite_file, sqlite_path
from control_plane.storage._paging import decode_token, page_limit, query_digest
from control_plane.storage._queries import (
    before,
    build_page,
    node_blobs,
    pipeline_not_found,
    replace_nodes,
    run_not_found,
    schedule_name,
    term_clauses,
    terms_key,
    version_not_found,
)
from control_plane.storage._schedule_tables import schedules
from control_plane.storage._tables import (
    ACTIVE_RUN_STATES,
    node_executions,
    pipeline_versions,
    pipelines,
    run_events,
    runs,
)
from control_plane.storage.repository import LabelTerm, NewRun, Page, RunChange, RunFilter
from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2, run_pb2

__all__ = ["SqlRepository", "normalize_url", "open_repository"]

log = logging.getLogger("raypipe.storage")

#: How long closing storage waits for writes under way to end.
CLOSE_WAIT_S = 30.0

#: Node states whose output a later run may reuse through the cross-run cache.
CACHE_SOURCE_STATES = (
    run_pb2.NodeExecution.STATE_SUCCEEDED,
    run_pb2.NodeExecution.STATE_CACHED,
)


def open_repository(url: str, *, exclusive: bool = False) -> SqlRepository:
    """Open the database at ``url``, migrate it to the newest schema, and return its repository.

    Args:
        url: ``sqlite:///path/to/raypipe.db`` or ``postgresql://user:pass@host/db``.
        exclusive: See :class:`SqlRepository`.
    """
    repository = SqlRepository(url, exclusive=exclusive)
    try:
        repository.migrate()
    except BaseException:
        repository.close()
        raise
    return repository


class SqlRepository:
    """Pipelines, versions, runs and their history in SQLite or PostgreSQL. Thread-safe."""

    def __init__(self, url: str, *, exclusive: bool = False) -> None:
        """Connect lazily to ``url``; call :meth:`migrate` (or use :func:`open_repository`).

        Args:
            url: ``sqlite:///path/to/raypipe.db`` or ``postgresql://user:pass@host/db``.
            exclusive: For the control plane. On SQLite, claim the file for this process
                (DatabaseInUseError if another holds it; :meth:`close` lets go) and, as its
                only writer, serve pipelines from memory (see :mod:`._owner`). On PostgreSQL,
                which replicas share, nothing changes.
        """
        self.url = normalize_url(url)
        self._closed = False
        self._claim: filelock.BaseFileLock | None = None
        self._cache: PipelineCache | None = None
        # Writes in flight: close() lets them end before it lets go of the claim.
        self._writes = 0
        self._writes_ended = threading.Condition()
        engines = create_engines(self.url)  # refuses URLs that are no file (":memory:")
        #: The SQLite file this process claimed (exclusive mode), as SQLite opened it.
        self.sqlite_file: Path | None = None
        if exclusive and self.url.get_backend_name() == "sqlite":
            self.sqlite_file = sqlite_path(engines.pool)
            self._claim = claim_sqlite_file(self.sqlite_file)
            self._cache = PipelineCache()
        self._pool = engines.pool
        self._single = engines.single
        self._snapshot = engines.snapshot
        self._writer = engines.writer
        self._get_pipeline = FastLookup(
            engines.pool,
            engines.single,
            sa.select(pipelines).where(pipelines.c.id == sa.bindparam("id")),
        )
        self._get_version = FastLookup(
            engines.pool,
            engines.single,
            sa.select(pipeline_versions).where(
                pipeline_versions.c.pipeline_id == sa.bindparam("pipeline_id"),
                pipeline_versions.c.version_number == sa.bindparam("version_number"),
            ),
        )

    # --- lifecycle ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there already)."""
        with self._write() as conn:
            _migrate.upgrade(conn)

    def ping(self) -> None:
        """Raise UnavailableError unless the database answers a trivial query and, for a
        claimed SQLite file, that file is still at its path: an open SQLite connection keeps
        answering after its file was deleted or its directory moved away (it holds the old
        file), while new connections cannot open it and whatever is written goes where the
        next server will not find it."""
        try:
            with self._read(self._single) as conn:
                conn.execute(sa.text("SELECT 1")).one()
        except sa.exc.SQLAlchemyError as exc:
            raise UnavailableError(f"the database does not answer: {exc}") from exc
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            raise UnavailableError(f"the SQLite database {self.sqlite_file} is gone")

    def close(self, wait_for_writes_s: float = CLOSE_WAIT_S) -> None:
        """Close every pooled connection; later calls raise UnavailableError.

        Writes already under way get up to ``wait_for_writes_s`` to end first. The claim on
        a SQLite file is let go only once none is left: a write that committed after a new
        server had claimed the file would leave that server's cache stale. (Should one still
        be running, the claim goes with the process.)
        """
        with self._writes_ended:
            self._closed = True
            drained = self._writes_ended.wait_for(lambda: self._writes == 0, wait_for_writes_s)
        self._pool.dispose()
        if self._claim is not None:
            if drained:
                self._claim.release()
            else:
                log.warning(
                    "storage closed with %d write(s) still running; the claim on the SQLite "
                    "file is kept until this process exits",
                    self._writes,
                )

    # --- pipelines -----------------------------------------------------------------------------
    def create_pipeline(
        self, pipeline_id: str, *, display_name: str, description: str, labels: dict[str, str]
    ) -> pipeline_pb2.Pipeline:
        """Store a new pipeline without versions; AlreadyExistsError if the id is taken."""
        now = _now()
        values = {
            "id": pipeline_id,
            "display_name": display_name,
            "description": description,
            "labels": dict(labels),
            "default_version_number": None,
            "latest_version_number": 0,
            "revision": 1,
            "create_time": now,
            "update_time": now,
        }
        try:
            with self._write() as conn:
                conn.execute(pipelines.insert().values(values))
        except sa.exc.IntegrityError as exc:
            if self._exists(pipelines, pipelines.c.id == pipeline_id):
                raise AlreadyExistsError(
                    f"pipeline '{pipeline_name(pipeline_id)}' already exists",
                    reason="PIPELINE_ALREADY_EXISTS",
                    metadata={"pipeline": pipeline_name(pipeline_id)},
                ) from exc
            raise
        return pipeline_from_row(SimpleNamespace(**values))

    def get_pipeline(self, pipeline_id: str) -> pipeline_pb2.Pipeline:
        """The pipeline; NotFoundError if there is none. One primary-key lookup."""
        if self._closed:
            raise UnavailableError("storage is closed")
        cache = self._cache
        if cache is not None and (cached := cache.get(pipeline_id)) is not None:
            return cached
        generation = cache.generation if cache is not None else 0
        row = self._get_pipeline({"id": pipeline_id})
        if row is None:
            raise pipeline_not_found(pipeline_id)
        pipeline = pipeline_from_row(row)
        if cache is not None:
            cache.put(pipeline_id, pipeline, generation)
        return pipeline

    def list_pipelines(
        self, *, page_size: int, page_token: str, terms: Sequence[LabelTerm]
    ) -> Page[pipeline_pb2.Pipeline]:
        """Pipelines newest first, restricted by ``terms``."""
        limit = page_limit(page_size)
        digest = query_digest("pipelines", terms_key(terms))
        after = decode_token(page_token, digest, (int, str))
        query = sa.select(pipelines).where(*term_clauses(pipelines, terms))
        if after is not None:
            query = query.where(before(pipelines, after))
        query = query.order_by(pipelines.c.create_time.desc(), pipelines.c.id.desc())
        with self._read(self._single) as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
        return build_page(
            rows, limit, pipeline_from_row, lambda r: [to_micros(r.create_time), r.id], digest
        )

    def delete_pipeline(self, pipeline_id: str, *, force: bool) -> None:
        """Delete a pipeline and its versions; its runs stay.

        Without ``force`` the pipeline must have no run that is pending, running or
        cancelling and no schedule (FailedPreconditionError otherwise).
        """
        with self._write_pipeline(pipeline_id) as conn:
            # Lock the row first: create_run takes a share lock on it, so no run can slip in
            # between the count below and the delete.
            found = conn.execute(
                sa.select(pipelines.c.id).where(pipelines.c.id == pipeline_id).with_for_update()
            ).first()
            if found is None:
                raise pipeline_not_found(pipeline_id)
            if not force:
                active = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(runs)
                    .where(runs.c.pipeline_id == pipeline_id, runs.c.state.in_(ACTIVE_RUN_STATES))
                ).scalar_one()
                used = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(schedules)
                    .where(schedules.c.pipeline_id == pipeline_id)
                ).scalar_one()
                if active or used:
                    users = [
                        f"{n} {what}{'s' if n != 1 else ''}{detail}"
                        for n, what, detail in (
                            (active, "active run", " (pending, running or cancelling)"),
                            (used, "schedule", ""),
                        )
                        if n
                    ]
                    raise FailedPreconditionError(
                        f"pipeline '{pipeline_name(pipeline_id)}' is used by {' and '.join(users)}; "
                        "wait for the runs to finish or cancel them, delete the schedules, or "
                        "delete with force",
                        reason="PIPELINE_IN_USE",
                        metadata={
                            "pipeline": pipeline_name(pipeline_id),
                            "active_runs": str(active),
                            "schedules": str(used),
                        },
                    )
            # pipeline_versions rows go with it (ON DELETE CASCADE), and so do its schedules on a
            # forced delete; runs are kept.
            conn.execute(pipelines.delete().where(pipelines.c.id == pipeline_id))

    # --- versions ------------------------------------------------------------------------------
    def create_version(
        self,
        pipeline_id: str,
        spec: pipeline_spec_pb2.PipelineSpec,
        *,
        spec_digest: str,
        description: str,
        make_default: bool,
    ) -> pipeline_pb2.PipelineVersion:
        """Store the pipeline's next version, numbered without gaps or duplicates.

        The number comes from the pipeline row's ``latest_version_number``, incremented by an
        ``UPDATE ... RETURNING``. That statement locks the row until commit (PostgreSQL's row
        lock, the same one ``SELECT ... FOR UPDATE`` takes; on SQLite the transaction already
        holds the database's write lock), so concurrent creates, in threads or processes, each
        read the number the previous one committed. A failed insert rolls the increment back
        with it, so no number is lost; the primary key (pipeline_id, version_number) is the
        backstop.
        """
        now = _now()
        blob = spec.SerializeToString(deterministic=True)
        number = pipelines.c.latest_version_number + 1
        changes: dict[str, Any] = {
            "latest_version_number": number,
            "revision": pipelines.c.revision + 1,
            "update_time": now,
        }
        if make_default:
            changes["default_version_number"] = number
        with self._write_pipeline(pipeline_id) as conn:
            version_number = conn.execute(
                pipelines.update()
                .where(pipelines.c.id == pipeline_id)
                .values(changes)
                .returning(pipelines.c.latest_version_number)
            ).scalar()
            if version_number is None:
                raise pipeline_not_found(pipeline_id)
            conn.execute(
                pipeline_versions.insert().values(
                    pipeline_id=pipeline_id,
                    version_number=version_number,
                    spec=blob,
                    spec_digest=spec_digest,
                    description=description,
                    create_time=now,
                )
            )
        version = pipeline_pb2.PipelineVersion(
            name=version_name(pipeline_id, version_number),
            version_number=version_number,
            spec=spec,
            spec_digest=spec_digest,
            description=description,
        )
        version.create_time.FromDatetime(now)
        return version

    def get_version(self, pipeline_id: str, version_number: int) -> pipeline_pb2.PipelineVersion:
        """One version with its spec; NotFoundError naming what is missing."""
        if self._closed:
            raise UnavailableError("storage is closed")
        row = self._get_version({"pipeline_id": pipeline_id, "version_number": version_number})
        if row is None:
            raise self._missing_version(pipeline_id, version_number)
        return version_from_row(row, with_spec=True)

    def list_versions(
        self, pipeline_id: str, *, page_size: int, page_token: str, omit_spec: bool
    ) -> Page[pipeline_pb2.PipelineVersion]:
        """Versions newest first, walking the primary key backwards from the token's number.

        With ``omit_spec`` the spec column is not even read, so pages stay small and fast
        however big the DAGs are.
        """
        limit = page_limit(page_size)
        digest = query_digest("versions", pipeline_id)
        after = decode_token(page_token, digest, (int,))
        columns = [c for c in pipeline_versions.c if not (omit_spec and c.name == "spec")]
        query = sa.select(*columns).where(pipeline_versions.c.pipeline_id == pipeline_id)
        if after is not None:
            query = query.where(pipeline_versions.c.version_number < after[0])
        query = query.order_by(pipeline_versions.c.version_number.desc()).limit(limit + 1)
        with self._read(self._single) as conn:
            rows = conn.execute(query).all()
        # Only an empty page needs the question whether the pipeline exists at all.
        if not rows and not self._exists(pipelines, pipelines.c.id == pipeline_id):
            raise pipeline_not_found(pipeline_id)
        return build_page(
            rows,
            limit,
            lambda r: version_from_row(r, with_spec=not omit_spec),
            lambda r: [r.version_number],
            digest,
        )

    def set_default_version(self, pipeline_id: str, version_number: int) -> pipeline_pb2.Pipeline:
        """Point the pipeline's default_version at an existing version (RollbackPipeline)."""
        with self._write_pipeline(pipeline_id) as conn:
            # FOR NO KEY UPDATE, like the UPDATE below: it serializes with other changes of
            # the row but lets runs of the pipeline be created meanwhile.
            current = conn.execute(
                sa.select(pipelines.c.default_version_number)
                .where(pipelines.c.id == pipeline_id)
                .with_for_update(key_share=True)
            ).first()
            if current is None:
                raise pipeline_not_found(pipeline_id)
            exists = conn.execute(
                sa.select(pipeline_versions.c.version_number).where(
                    pipeline_versions.c.pipeline_id == pipeline_id,
                    pipeline_versions.c.version_number == version_number,
                )
            ).first()
            if exists is None:
                raise version_not_found(pipeline_id, version_number)
            if current.default_version_number == version_number:
                # Already the default: nothing changes, so neither do update_time and etag.
                row = conn.execute(sa.select(pipelines).where(pipelines.c.id == pipeline_id)).one()
            else:
                row = conn.execute(
                    pipelines.update()
                    .where(pipelines.c.id == pipeline_id)
                    .values(
                        default_version_number=version_number,
                        revision=pipelines.c.revision + 1,
                        update_time=_now(),
                    )
                    .returning(*pipelines.c)
                ).one()
            return pipeline_from_row(row)

    # --- runs ----------------------------------------------------------------------------------
    def create_run(self, new: NewRun) -> tuple[run_pb2.Run, bool]:
        """Store a new PENDING run with a PENDING record per node, in the given order.

        Returns ``(run, True)``, or ``(existing, False)`` when a run with the same non-empty
        ``request_id`` exists (also when it was created concurrently a moment ago). Raises
        AlreadyExistsError (reason RUN_ALREADY_SCHEDULED) for a second run of the same
        (schedule, scheduled_time), and NotFoundError when the version does not exist.
        """
        if new.request_id:
            existing = self._run_by_request_id(new.request_id)
            if existing is not None:
                return existing, False
        schedule = schedule_name(new.schedule)
        row, nodes = new_run_rows(new, schedule, _now())
        try:
            with self._write() as conn:
                # A key-share lock on the pipeline's row: DeletePipeline's FOR UPDATE waits
                # for this transaction, then counts this run among the active ones; if the
                # delete came first, the row is gone and this run is refused. (Creating
                # versions takes a weaker row lock that does not conflict with this one.)
                version = conn.execute(
                    sa.select(pipeline_versions.c.version_number)
                    .join(pipelines, pipelines.c.id == pipeline_versions.c.pipeline_id)
                    .where(
                        pipeline_versions.c.pipeline_id == new.pipeline_id,
                        pipeline_versions.c.version_number == new.version_number,
                    )
                    .with_for_update(read=True, key_share=True, of=pipelines)
                ).first()
                if version is None:
                    raise version_not_found(new.pipeline_id, new.version_number)
                conn.execute(runs.insert().values(row))
                if nodes:
                    conn.execute(node_executions.insert(), nodes)
        except sa.exc.IntegrityError as exc:
            self._raise_run_conflict(new, schedule, exc)
            existing = self._run_by_request_id(new.request_id)
            if existing is None:
                raise
            return existing, False
        return run_from_row(SimpleNamespace(**row), (n["data"] for n in nodes)), True

    def _raise_run_conflict(
        self, new: NewRun, schedule: str | None, exc: sa.exc.IntegrityError
    ) -> None:
        """After an insert failed on a unique index, raise the API error for it, or return
        when the cause is a run with the same request_id (created concurrently)."""
        if new.request_id and self._exists(runs, runs.c.request_id == new.request_id):
            return
        if schedule and self._exists(
            runs, runs.c.schedule == schedule, runs.c.scheduled_time == new.scheduled_time
        ):
            when = new.scheduled_time.isoformat() if new.scheduled_time else ""
            raise AlreadyExistsError(
                f"schedule '{schedule}' already started a run for {when}",
                reason="RUN_ALREADY_SCHEDULED",
                metadata={"schedule": schedule, "scheduled_time": when},
            ) from exc
        if self._exists(runs, runs.c.id == new.run_id):
            raise AlreadyExistsError(
                f"run 'runs/{new.run_id}' already exists", reason="RUN_ALREADY_EXISTS"
            ) from exc
        raise exc

    def get_run(self, run_id: str, *, node_ids: Collection[str] | None = None) -> run_pb2.Run:
        """The run with its nodes in spec order (only those in ``node_ids`` when given);
        NotFoundError if there is none."""
        with self._read(self._snapshot) as conn:
            return self._load_run(conn, run_id, node_ids)

    def list_runs(self, *, page_size: int, page_token: str, filter: RunFilter) -> Page[run_pb2.Run]:
        """Runs newest first, with their nodes, restricted by ``filter``."""
        limit = page_limit(page_size)
        schedule = schedule_name(filter.schedule)
        digest = query_digest(
            "runs",
            filter.pipeline_id,
            filter.version_number,
            sorted(set(filter.states)),
            schedule,
            terms_key(filter.terms),
        )
        after = decode_token(page_token, digest, (int, str))
        query = sa.select(runs).where(*term_clauses(runs, filter.terms))
        if filter.pipeline_id:
            query = query.where(runs.c.pipeline_id == filter.pipeline_id)
        if filter.version_number:
            query = query.where(runs.c.version_number == filter.version_number)
        if filter.states:
            query = query.where(runs.c.state.in_(sorted(set(filter.states))))
        if schedule:
            query = query.where(runs.c.schedule == schedule)
        if after is not None:
            query = query.where(before(runs, after))
        query = query.order_by(runs.c.create_time.desc(), runs.c.id.desc()).limit(limit + 1)
        with self._read(self._snapshot) as conn:
            rows = conn.execute(query).all()
            nodes = node_blobs(conn, [r.id for r in rows[:limit]])
        return build_page(
            rows,
            limit,
            lambda r: run_from_row(r, nodes.get(r.id, ())),
            lambda r: [to_micros(r.create_time), r.id],
            digest,
        )

    def record(
        self, run_id: str, change: RunChange, *, node_ids: Collection[str] | None = None
    ) -> tuple[run_pb2.Run, list[run_pb2.RunEvent]]:
        """Apply ``change`` to the run in one transaction; returns the run (with only the nodes
        in ``node_ids`` when given) and the stored events."""
        now = _now()
        values: dict[str, Any] = {"update_time": now}
        if change.state is not None:
            values["state"] = change.state
        if change.start_time is not None:
            values["start_time"] = change.start_time
        if change.end_time is not None:
            values["end_time"] = change.end_time
        if change.error is not None:
            # An empty ExecutionError clears the error.
            values["error"] = change.error.SerializeToString() or None
        if change.labels is not None:
            values["labels"] = dict(change.labels)
        if change.tracking is not None:
            values["tracking"] = change.tracking.SerializeToString() or None
        if change.engine_cursor is not None:
            values["engine_cursor"] = change.engine_cursor
        if change.events:
            values["next_event_sequence"] = runs.c.next_event_sequence + len(change.events)
        with self._write() as conn:
            # The UPDATE locks the run's row, so concurrent records of one run take turns
            # and their events get consecutive sequence numbers.
            next_sequence = conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(values)
                .returning(runs.c.next_event_sequence)
            ).scalar()
            if next_sequence is None:
                raise run_not_found(run_id)
            if change.node_updates:
                replace_nodes(conn, run_id, change.node_updates)
            events = []
            first = next_sequence - len(change.events)
            for offset, event_ in enumerate(change.events):
                stored = run_pb2.RunEvent()
                stored.CopyFrom(event_)
                stored.sequence = first + offset
                if not stored.HasField("time"):
                    stored.time.FromDatetime(now)
                events.append(stored)
            if events:
                conn.execute(
                    run_events.insert(),
                    [
                        {"run_id": run_id, "sequence": e.sequence, "data": e.SerializeToString()}
                        for e in events
                    ],
                )
            return self._load_run(conn, run_id, node_ids), events

    def list_events(self, run_id: str, *, after_sequence: int = 0) -> list[run_pb2.RunEvent]:
        """The run's events with a sequence above ``after_sequence``, in order."""
        with self._read(self._snapshot) as conn:
            blobs = (
                conn.execute(
                    sa.select(run_events.c.data)
                    .where(run_events.c.run_id == run_id, run_events.c.sequence > after_sequence)
                    .order_by(run_events.c.sequence)
                )
                .scalars()
                .all()
            )
            if (
                not blobs
                and not conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first()
            ):
                raise run_not_found(run_id)
        return [run_pb2.RunEvent.FromString(blob) for blob in blobs]

    def engine_cursor(self, run_id: str) -> int:
        """The last engine event folded into the run's record (0 before the first)."""
        with self._read(self._single) as conn:
            cursor = conn.execute(
                sa.select(runs.c.engine_cursor).where(runs.c.id == run_id)
            ).scalar()
        if cursor is None:
            raise run_not_found(run_id)
        return int(cursor)

    def active_run_ids(self) -> list[str]:
        """Ids of the runs that are pending, running or cancelling, oldest first."""
        with self._read(self._single) as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.id)
                    .where(runs.c.state.in_(ACTIVE_RUN_STATES))
                    .order_by(runs.c.create_time, runs.c.id)
                ).scalars()
            )

    def find_cached_nodes(
        self, cache_keys: Collection[str], *, exclude_run_id: str = ""
    ) -> dict[str, tuple[str, run_pb2.NodeExecution]]:
        keys = sorted(set(cache_keys))
        if not keys:
            return {}
        query = (
            sa.select(node_executions.c.cache_key, node_executions.c.run_id, node_executions.c.data)
            .join(runs, runs.c.id == node_executions.c.run_id)
            .where(
                node_executions.c.cache_key.in_(keys),
                node_executions.c.state.in_(CACHE_SOURCE_STATES),
                node_executions.c.run_id != exclude_run_id,
            )
            .order_by(runs.c.create_time.desc(), runs.c.id.desc())
        )
        found: dict[str, tuple[str, run_pb2.NodeExecution]] = {}
        with self._read(self._single) as conn:
            for key, run_id, data in conn.execute(query):
                if key not in found:
                    found[key] = (run_id, run_pb2.NodeExecution.FromString(data))
        return found

    # --- internals -----------------------------------------------------------------------------
    @contextmanager
    def _read(self, engine: sa.Engine) -> Iterator[sa.Connection]:
        if self._closed:
            raise UnavailableError("storage is closed")
        with engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._writes_ended:
            if self._closed:
                raise UnavailableError("storage is closed")
            self._writes += 1
        try:
            with self._writer.begin() as conn:
                yield conn
        finally:
            with self._writes_ended:
                self._writes -= 1
                self._writes_ended.notify_all()

    @contextmanager
    def _write_pipeline(self, pipeline_id: str) -> Iterator[sa.Connection]:
        """A write that may change the row of ``pipeline_id``: its cache entry goes once the
        transaction has ended, committed or not."""
        try:
            with self._write() as conn:
                yield conn
        finally:
            if self._cache is not None:
                self._cache.invalidate(pipeline_id)

    def _exists(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> bool:
        query = sa.select(sa.literal(1)).select_from(table).where(*where).limit(1)
        with self._read(self._single) as conn:
            return conn.execute(query).first() is not None

    def _missing_version(self, pipeline_id: str, version_number: int) -> NotFoundError:
        if not self._exists(pipelines, pipelines.c.id == pipeline_id):
            return pipeline_not_found(pipeline_id)
        return version_not_found(pipeline_id, version_number)

    def _run_by_request_id(self, request_id: str) -> run_pb2.Run | None:
        with self._read(self._snapshot) as conn:
            run_id = conn.execute(
                sa.select(runs.c.id).where(runs.c.request_id == request_id)
            ).scalar()
            return None if run_id is None else self._load_run(conn, run_id)

    def _load_run(
        self, conn: sa.Connection, run_id: str, node_ids: Collection[str] | None = None
    ) -> run_pb2.Run:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise run_not_found(run_id)
        return run_from_row(row, node_blobs(conn, [run_id], node_ids).get(run_id, ()))


def _now() -> datetime:
    return datetime.now(UTC)
