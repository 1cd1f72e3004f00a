"""Schedules and their fire decisions in SQLite or PostgreSQL (SQLAlchemy Core).

:class:`ScheduleRepository` shares the connection pool of the
:class:`~control_plane.storage.sql.SqlRepository` it is built from, so schedules, fires and
runs are one database and one pool. It stores; it does not decide: the policy lives in
:mod:`control_plane.schedules.policy` and the loop in :mod:`control_plane.schedules.scheduler`, which
reads and writes through a :class:`ScheduleTx` so that a decision and its record are one
transaction.

Claiming: :meth:`ScheduleTx.lock_due` and :meth:`ScheduleTx.lock` lock schedule rows until
commit (``SELECT ... FOR UPDATE``, with ``SKIP LOCKED`` for the loop, on PostgreSQL; on
SQLite every write transaction holds the database's write lock from ``BEGIN IMMEDIATE``).
Every path that decides about a schedule's fires (the loop, update, pause, trigger,
backfill, starting a buffered fire) takes that lock first, so two replicas never decide
about the same schedule at once; the primary key of ``schedule_fires`` is the backstop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from control_plane.errors import UnavailableError
from control_plane.storage._convert import to_micros
from control_plane.storage._engine import Engines
from control_plane.storage._paging import decode_token, page_limit, query_digest
from control_plane.storage._queries import before, build_page
from control_plane.storage._schedule_rows import (
    Advance,
    Fire,
    FireDecision,
    FireJob,
    NewSchedule,
    Occupancy,
    ScheduleRow,
    Wakeup,
    fire_from_row,
    job_from_row,
    schedule_from_row,
    schedule_not_found,
)
from control_plane.storage._schedule_tables import ATTEMPT_LABEL, schedule_fires, schedules
from control_plane.storage._schedule_tx import (
    TERMINAL_RUN_STATES,
    ScheduleTx,
    fire_update,
    select_jobs,
    select_rows,
)
from control_plane.storage._tables import ACTIVE_RUN_STATES, UtcDateTime, runs
from control_plane.storage.repository import Page, Repository

__all__ = [
    "ATTEMPT_LABEL",
    "Advance",
    "Fire",
    "FireDecision",
    "FireJob",
    "NewSchedule",
    "Occupancy",
    "ScheduleRepository",
    "ScheduleRow",
    "ScheduleTx",
    "Wakeup",
    "schedule_not_found",
]


class ScheduleRepository:
    """Schedules and fires in the database of a SqlRepository. Thread-safe."""

    def __init__(self, engines: Engines) -> None:
        """Use ``engines`` (the SqlRepository's pool and transaction kinds)."""
        self._engines = engines
        self.dialect = engines.pool.dialect.name

    @classmethod
    def of(cls, repository: Repository) -> ScheduleRepository:
        """The schedules of a SqlRepository's database, on its connection pool.

        Raises:
            TypeError: ``repository`` is not SQL.
        """
        engines = getattr(repository, "engines", None)
        if not isinstance(engines, Engines):
            raise TypeError(f"schedules need a SqlRepository, not {repository!r}")
        return cls(engines)

    # --- transactions --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[ScheduleTx]:
        """A write transaction; everything done through the ScheduleTx commits together."""
        try:
            with self._engines.writer.begin() as conn:
                yield ScheduleTx(conn, self.dialect)
        except sa.exc.OperationalError as exc:
            raise UnavailableError(f"the database does not answer: {exc.orig}") from exc

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engines.snapshot.connect() as conn:
            yield conn

    # --- schedules -----------------------------------------------------------------------------
    def get(self, schedule_id: str) -> ScheduleRow:
        """The schedule; NotFoundError if there is none."""
        with self._read() as conn:
            row = conn.execute(select_rows().where(schedules.c.id == schedule_id)).first()
        if row is None:
            raise schedule_not_found(schedule_id)
        return schedule_from_row(row)

    def get_by_request_id(self, request_id: str) -> ScheduleRow | None:
        """The schedule a CreateSchedule with this request_id created, if any."""
        with self._read() as conn:
            row = conn.execute(select_rows().where(schedules.c.request_id == request_id)).first()
        return None if row is None else schedule_from_row(row)

    def list_schedules(
        self, *, page_size: int, page_token: str, pipeline_id: str
    ) -> Page[ScheduleRow]:
        """Schedules newest first, of one pipeline when ``pipeline_id`` is given."""
        limit = page_limit(page_size)
        digest = query_digest("schedules", pipeline_id)
        after = decode_token(page_token, digest, (int, str))
        query = select_rows()
        if pipeline_id:
            query = query.where(schedules.c.pipeline_id == pipeline_id)
        if after is not None:
            query = query.where(before(schedules, after))
        query = query.order_by(schedules.c.create_time.desc(), schedules.c.id.desc())
        with self._read() as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
        return build_page(
            rows, limit, schedule_from_row, lambda r: [to_micros(r.create_time), r.id], digest
        )

    def claim_pending(
        self, now: datetime, lease_until: datetime, *, ignore_lease: bool, limit: int
    ) -> list[FireJob]:
        """Pending fires whose lease ran out (or all, with ``ignore_lease``), leased anew.

        Pending fires are the ones a process decided to start and may not have: it died, or
        starting failed. Their runs' request ids make starting them again idempotent.
        """
        with self.transaction() as tx:
            query = select_jobs().where(schedule_fires.c.state == "pending")
            if not ignore_lease:
                query = query.where(
                    sa.or_(
                        schedule_fires.c.lease_until.is_(None),
                        schedule_fires.c.lease_until <= now,
                    )
                )
            rows = tx.conn.execute(
                query.order_by(schedule_fires.c.scheduled_time)
                .limit(limit)
                .with_for_update(skip_locked=True, of=schedule_fires)
            ).all()
            jobs = [job_from_row(r) for r in rows]
            tx.lease([job.fire for job in jobs], lease_until, now)
        return jobs

    def claim_retries(self, now: datetime, lease_until: datetime, *, limit: int) -> list[FireJob]:
        """Retrying fires whose backoff is over, turned pending (next attempt) and leased."""
        with self.transaction() as tx:
            rows = tx.conn.execute(
                select_jobs()
                .where(schedule_fires.c.state == "retrying", schedule_fires.c.retry_at <= now)
                .order_by(schedule_fires.c.retry_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=schedule_fires)
            ).all()
            jobs = [job_from_row(r) for r in rows]
            for job in jobs:
                tx.conn.execute(
                    fire_update(job.fire).values(
                        state="pending", run_id=None, lease_until=lease_until, update_time=now
                    )
                )
        return [
            FireJob(replace(j.fire, state="pending", run_id=None), j.pipeline_id, j.config)
            for j in jobs
        ]

    def mark_started(self, started: Sequence[tuple[Fire, str, bool]], *, now: datetime) -> None:
        """Record the runs of pending fires' attempts, in one transaction.

        Args:
            started: (fire, its run id, whether to watch the run for a retry) each. A fire
                that moved on meanwhile (deleted, or started by another replica) is left.
            now: The current time.
        """
        if not started:
            return
        statement = (
            schedule_fires.update()
            .where(
                schedule_fires.c.schedule_id == sa.bindparam("b_schedule_id"),
                schedule_fires.c.scheduled_time == sa.bindparam("b_scheduled_time"),
                schedule_fires.c.attempt == sa.bindparam("b_attempt"),
                schedule_fires.c.state == "pending",
            )
            .values(
                state=sa.bindparam("b_state"),
                run_id=sa.bindparam("b_run_id"),
                lease_until=None,
                update_time=now,
            )
        )
        with self.transaction() as tx:
            tx.conn.execute(
                statement,
                [
                    {
                        "b_schedule_id": fire.schedule_id,
                        "b_scheduled_time": fire.scheduled_time,
                        "b_attempt": fire.attempt,
                        "b_state": "watching" if watch else "started",
                        "b_run_id": run_id,
                    }
                    for fire, run_id, watch in started
                ],
            )

    def mark_failed(self, fire: Fire, message: str, *, now: datetime) -> None:
        """A pending fire that cannot start, for good (its message says why)."""
        with self.transaction() as tx:
            tx.conn.execute(
                fire_update(fire)
                .where(schedule_fires.c.state == "pending")
                .values(state="failed", message=message, lease_until=None, update_time=now)
            )

    def fires(self, schedule_id: str) -> list[Fire]:
        """Every fire of a schedule, oldest first (for tests and operators)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(schedule_fires)
                .where(schedule_fires.c.schedule_id == schedule_id)
                .order_by(schedule_fires.c.scheduled_time)
            ).all()
        return [fire_from_row(r) for r in rows]

    def prune_fires(self, before: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` fire records that exactly-once no longer needs; how many.

        A record goes once it was last changed before ``before``, its schedule's cursor has
        passed it (the loop never decides about it again), and it is done: skipped, failed,
        or started with a run that is terminal (no retry can follow). Its run, if any, stays
        in ``runs``, whose unique (schedule, scheduled_time, attempt) index keeps the fire
        from running twice, and which BackfillSchedule consults too. Fires of a
        TriggerSchedule call with a request_id are kept (they make a retried call
        idempotent; people make them, so they are few).
        """
        fires = schedule_fires.c
        terminal_runs = sa.select(runs.c.id).where(runs.c.state.in_(TERMINAL_RUN_STATES))
        done = sa.select(fires.schedule_id, fires.scheduled_time).where(
            fires.update_time < before,
            fires.request_id.is_(None),
            fires.scheduled_time
            <= sa.select(schedules.c.fired_through)
            .where(schedules.c.id == fires.schedule_id)
            .scalar_subquery(),
            sa.or_(
                fires.state.in_(("skipped", "failed")),
                sa.and_(fires.state == "started", fires.run_id.in_(terminal_runs)),
            ),
        )
        with self.transaction() as tx:
            result = tx.conn.execute(
                schedule_fires.delete().where(
                    sa.tuple_(fires.schedule_id, fires.scheduled_time).in_(done.limit(limit))
                )
            )
        return int(result.rowcount or 0)

    def find_run_id(self, schedule_id: str, scheduled_time: datetime, attempt: int) -> str | None:
        """The run of one attempt of a fire, found by the runs' own (schedule, time) record."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(runs.c.id, runs.c.labels).where(
                    runs.c.schedule == f"schedules/{schedule_id}",
                    runs.c.scheduled_time == scheduled_time,
                )
            ).all()
        for run_id, labels in rows:
            if str((labels or {}).get(ATTEMPT_LABEL, "1")) == str(attempt):
                return str(run_id)
        return None

    def active_run_ids(self, schedule_id: str) -> list[str]:
        """The schedule's runs that are not terminal."""
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.id).where(
                        runs.c.schedule == f"schedules/{schedule_id}",
                        runs.c.state.in_(ACTIVE_RUN_STATES),
                    )
                ).scalars()
            )

    def wakeup(self) -> Wakeup:
        """What the firing loop waits for next, in one query."""
        fires = schedule_fires.c

        def earliest(column: sa.Column[Any], *where: sa.ColumnElement[bool]) -> Any:
            # type_coerce: an aggregate would lose the column's type (and its conversion
            # from SQLite's text) otherwise.
            return sa.type_coerce(
                sa.select(sa.func.min(column)).where(*where).scalar_subquery(), UtcDateTime
            )

        query = sa.select(
            earliest(schedules.c.next_due_time, schedules.c.paused.is_(False)),
            earliest(fires.retry_at, fires.state == "retrying"),
            earliest(fires.lease_until, fires.state == "pending"),
            sa.exists().where(fires.state.in_(("watching", "buffered"))),
        )
        with self._read() as conn:
            due, retry, lease, watching = conn.execute(query).one()
        return Wakeup(next_due=due, next_retry=retry, next_lease=lease, watching=bool(watching))
