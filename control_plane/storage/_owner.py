"""A SQLite database as one control plane's own, and the pipeline cache that this makes safe.

The embedded default keeps state in a SQLite file that exactly one control plane serves
(replicas share PostgreSQL instead). The server claims the file with an exclusive lock beside
it, so a second ``raypipe serve`` on the same database fails at start with a clear error
rather than running a second scheduler and a second run supervisor over the same rows. The
lock is an ``flock``: the kernel drops it when the process dies, ``kill -9`` included, so a
restart never finds a stale claim.

While it holds the claim, the process is the database's only writer, so it can keep pipeline
rows in memory with no staleness at all, provided every write of a pipeline row drops its
entry *after* the write's transaction has ended, and a read that raced with a write never
stores what it read. :class:`PipelineCache` keeps that rule with a generation number.
GetPipeline is the control plane's hottest read: served from memory it costs no database
call, and no release of the GIL that lets the gRPC server's own threads in between.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cachetools
import filelock
import sqlalchemy as sa

from raypipe.v1 import pipeline_pb2

__all__ = ["DatabaseInUseError", "PipelineCache", "claim_sqlite_file", "sqlite_path"]

#: Pipelines kept in memory; when it is full, the least recently read one goes.
CACHE_SIZE = 10_000


class DatabaseInUseError(RuntimeError):
    """Another control plane holds the SQLite database."""


def sqlite_path(pool: sa.Engine) -> Path:
    """The absolute path of the SQLite file ``pool`` opens, as SQLite itself resolved it
    (``PRAGMA database_list``), so that ``file:`` URIs, relative paths and symlinks all name
    the file they really open."""
    connection = pool.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            rows = cursor.execute("PRAGMA database_list").fetchall()
        finally:
            cursor.close()
    finally:
        connection.close()
    main = next((row[2] for row in rows if row[1] == "main"), "")
    if not main:
        raise ValueError("the SQLite database has no file to claim")
    return Path(main).resolve()


def claim_sqlite_file(database: Path) -> filelock.BaseFileLock:
    """Take the exclusive claim on the SQLite file ``database``, or raise DatabaseInUseError.

    The lock file is the database's path with ``-raypipe.lock`` appended; it is left in
    place when released (removing it would race with a process about to lock it).
    """
    lock = filelock.FileLock(f"{database}-raypipe.lock", thread_local=False, mode=0o600)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise DatabaseInUseError(
            f"the SQLite database {database} is in use by another raypipe control plane "
            "(one control plane serves a SQLite database; stop the other one, give this one "
            "its own --data-dir, or share a PostgreSQL database with --db postgresql://...)"
        ) from None
    return lock


class PipelineCache:
    """Pipelines by id, for a database this process alone writes. Thread-safe.

    Readers take :attr:`generation` before they read the database and pass it to
    :meth:`put`; writers call :meth:`invalidate` after their transaction has ended. A read
    that overlapped a write therefore sees a newer generation at ``put`` and stores nothing,
    whichever of the two committed first.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._lock = threading.Lock()
        self._rows: cachetools.LRUCache[str, pipeline_pb2.Pipeline] = cachetools.LRUCache(size)
        self._generation = 0

    @property
    def generation(self) -> int:
        """The number of invalidations so far; read it before reading the database."""
        return self._generation

    def get(self, pipeline_id: str) -> pipeline_pb2.Pipeline | None:
        """A copy of the cached pipeline (callers may change it), or None."""
        with self._lock:
            cached = self._rows.get(pipeline_id)
        if cached is None:
            return None
        copy = pipeline_pb2.Pipeline()
        copy.CopyFrom(cached)
        return copy

    def put(self, pipeline_id: str, pipeline: pipeline_pb2.Pipeline, generation: int) -> None:
        """Keep a copy of ``pipeline``, read from the database after ``generation`` was taken,
        unless a write has invalidated anything since."""
        copy = pipeline_pb2.Pipeline()
        copy.CopyFrom(pipeline)
        with self._lock:
            if generation == self._generation:
                self._rows[pipeline_id] = copy

    def invalidate(self, pipeline_id: str) -> None:
        """Forget ``pipeline_id`` and turn away every read in flight."""
        with self._lock:
            self._generation += 1
            self._rows.pop(pipeline_id, None)
