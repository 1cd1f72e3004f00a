"""The SQL repository's foundation: the engines, the SQLite claim and pipeline cache, the
lifecycle (migrate, ping, close) and the three kinds of transaction every query uses (see
:mod:`._engine`). The queries themselves are by domain: :mod:`._sql_pipelines`,
:mod:`._sql_runs` (and :mod:`.schedules`)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import filelock
import sqlalchemy as sa

from control_plane.errors import (
    UnavailableError,
)
from control_plane.storage import _migrate
from control_plane.storage._engine import create_engines, normalize_url
from control_plane.storage._fastread import FastLookup
from control_plane.storage._owner import PipelineCache, claim_sqlite_file, sqlite_path
from control_plane.storage._tables import (
    pipeline_versions,
    pipelines,
)

log = logging.getLogger("raypipe.storage")

#: How long closing storage waits for writes under way to end.
CLOSE_WAIT_S = 30.0


class SqlBase:
    """Connections and transactions of a :class:`~control_plane.storage.sql.SqlRepository`."""

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
        #: This repository's id in cross-replica notifications (:mod:`._notify`): a process
        #: skips its own.
        self._origin = uuid.uuid4().hex
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
        #: The connection pool and its three transaction kinds; the schedules' queries
        #: (:class:`~control_plane.storage.schedules.ScheduleRepository`) share them.
        self.engines = engines
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


def _now() -> datetime:
    return datetime.now(UTC)
