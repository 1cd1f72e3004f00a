"""SQLAlchemy engines for SQLite and PostgreSQL, and the three kinds of transaction.

- ``single``: single-statement reads run without a transaction (SQLite's autocommit,
  PostgreSQL's ``AUTOCOMMIT``): no BEGIN and ROLLBACK on the hottest path, GetPipeline.
- ``snapshot``: multi-statement reads see one snapshot (a deferred transaction in SQLite's
  WAL mode, ``REPEATABLE READ`` on PostgreSQL), so a run and its nodes always match.
- ``writer``: on SQLite, writes begin ``IMMEDIATE``: they take the database's write lock up
  front, so concurrent writers, threads or processes, queue on ``busy_timeout`` instead of
  failing with "database is locked" when a deferred transaction tries to upgrade. On
  PostgreSQL, ``READ COMMITTED``, and each write locks the rows it depends on.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["Engines", "create_engines", "normalize_url"]

_BEGIN = "raypipe_begin"  # execution option read by the SQLite "begin" hook


@dataclass(frozen=True)
class Engines:
    """One connection pool, seen through the three transaction kinds."""

    pool: sa.Engine
    single: sa.Engine
    snapshot: sa.Engine
    writer: sa.Engine


def normalize_url(url: str) -> sa.URL:
    """The SQLAlchemy URL for a ``--db`` value; PostgreSQL URLs get the installed psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engines(url: sa.URL) -> Engines:
    """Create the pool for ``url`` (connecting lazily) and its transaction kinds."""
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
        return Engines(
            pool=engine,
            single=engine.execution_options(**{_BEGIN: None}),
            snapshot=engine.execution_options(**{_BEGIN: "DEFERRED"}),
            writer=engine.execution_options(**{_BEGIN: "IMMEDIATE"}),
        )
    # pre_ping: a replica keeps working after PostgreSQL restarts or fails over.
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return Engines(
        pool=engine,
        single=engine.execution_options(isolation_level="AUTOCOMMIT"),
        snapshot=engine.execution_options(isolation_level="REPEATABLE READ"),
        writer=engine.execution_options(isolation_level="READ COMMITTED"),
    )


def _enable_wal(cursor: Any, wait_s: float = 30.0) -> None:
    """Switch a connection's database to WAL (a no-op once it is: the mode is persistent).

    The first switch of a new file needs it to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another connection (a second server
    starting on the same file) holds it: wait for the other connection as the busy timeout
    would.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    database = url.database or ""
    if (
        database in ("", ":memory:")
        or "mode=memory" in database
        or url.query.get("mode") == "memory"
    ):
        # Every pooled connection would see its own empty database.
        raise ValueError(
            "an in-memory SQLite database cannot be shared by the control plane's threads; "
            "use a file, such as sqlite:///path/to/raypipe.db"
        )
    if not database.startswith("file:"):
        Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A new database file is this user's only; SQLite gives its -wal and -shm files the
        # same mode.
        os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
    # Writers queue on the database lock anyway; the larger pool lets readers (WAL readers
    # never block) keep going while writers wait.
    engine = sa.create_engine(url, pool_size=10, max_overflow=40, pool_timeout=60)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below; pysqlite's own would start
        # deferred transactions (and, before Python 3.12, none around DDL).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            # First, so that the journal_mode switch waits for other processes too.
            cursor.execute("PRAGMA busy_timeout = 30000")
            _enable_wal(cursor)
            # FULL makes every commit durable when it returns, against a process crash
            # (kill -9) and power loss alike. NORMAL in WAL mode survives a process crash but
            # may lose the last commits on power loss. Control-plane writes are few and small,
            # so an fsync per commit is affordable, and "committed means kept" holds always.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN, "DEFERRED")
        if mode is not None:
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
