"""Cross-replica wake-ups on PostgreSQL: LISTEN/NOTIFY on one channel.

Every transaction that stores events of a run sends ``NOTIFY raypipe_run_events`` with the
run's id and the sending repository's origin (PostgreSQL delivers it at commit, and drops it
with a rollback). Each replica listens on a connection of its own and wakes the watchers of
that run, so a WatchRun on replica B follows a run that replica A records as promptly as A's
own watchers do. Notifications are a latency aid, not the source of truth: a watcher still
re-reads storage on a timer (the polling fallback), which covers a listener that is
reconnecting and anything PostgreSQL dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

__all__ = ["CHANNEL", "RunListener", "notify_run"]

log = logging.getLogger("raypipe.storage")

#: The channel every replica of one database listens on.
CHANNEL = "raypipe_run_events"
#: How long the listener waits for a notification before it checks whether it should stop.
WAIT_S = 1.0
#: The longest pause between two attempts to reconnect a lost listening connection.
MAX_BACKOFF_S = 10.0


def notify_run(conn: sa.Connection, run_id: str, origin: str) -> None:
    """Queue a notification that ``run_id`` has new events, sent when ``conn`` commits."""
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, f"{run_id} {origin}")))


class RunListener:
    """Listens on :data:`CHANNEL` in a thread and calls ``callback(run_id)`` for every
    notification that another origin sent, until :meth:`close`."""

    def __init__(self, url: sa.URL, origin: str, callback: Callable[[str], None]) -> None:
        # psycopg takes the libpq URL: SQLAlchemy's without its "+psycopg" driver suffix.
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._origin = origin
        self._callback = callback
        self._stop = threading.Event()
        #: Set once the first LISTEN is in place (tests wait on it).
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WAIT_S + 5)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=WAIT_S):
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning(
                    "listening for other replicas' run events failed (%s); watchers poll "
                    "until it is back, reconnecting in %.1f s",
                    exc,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _deliver(self, payload: str) -> None:
        run_id, _, origin = payload.partition(" ")
        if origin == self._origin:
            return  # this process's own write: its watchers were woken already
        try:
            self._callback(run_id)
        except Exception:
            log.exception("waking the watchers of run %s failed", run_id)
