"""Schedules and their fire decisions in SQLite or PostgreSQL (SQLAlchemy Core).

:class:`ScheduleRepository` shares the connection pool of the
:class:`~control_plane.storage.sql.SqlRepository` it is built from, so schedules, fires and
runs are one database and one pool. It stores; it does not decide: the firing policy lives
in :mod:`control_plane.scheduler`, which reads and writes through a :class:`ScheduleTx` so
that a decision and its record are one transaction.

Claiming: :meth:`ScheduleTx.lock_due` and :meth:`ScheduleTx.lock` lock schedule rows until
commit (``SELECT ... FOR UPDATE``, with ``SKIP LOCKED`` for the loop, on PostgreSQL; on
SQLite every write transaction holds the database's write lock from ``BEGIN IMMEDIATE``).
Every path that decides about a schedule's fires (the loop, update, pause, trigger,
backfill, starting a buffered fire) takes that lock first, so two replicas never decide
about the same schedule at once; the primary key of ``schedule_fires`` is the backstop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

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
    fire_from_values,
    job_from_row,
    schedule_from_row,
    schedule_not_found,
)
from control_plane.storage._schedule_tables import ATTEMPT_LABEL, schedule_fires, schedules
from control_plane.storage._tables import ACTIVE_RUN_STATES, UtcDateTime, pipelines, runs
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

# Fire states that hold a schedule "running" for the overlap policies besides its active
# runs: decided but not started yet, or between the attempts of a retry.
_OCCUPYING = ("pending", "retrying")
_TERMINAL_RUN_STATES = (3, 4, 6)  # Run.State SUCCEEDED, FAILED, CANCELLED


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
        if engines is None:
            # SqlRepository keeps its engines privately; until it exposes them (one line:
            # `self.engines = engines`), rebuild the same view of the same pool.
            try:
                engines = Engines(
                    pool=repository._pool,  # type: ignore[attr-defined]
                    single=repository._single,  # type: ignore[attr-defined]
                    snapshot=repository._snapshot,  # type: ignore[attr-defined]
                    writer=repository._writer,  # type: ignore[attr-defined]
                )
            except AttributeError as exc:
                raise TypeError(f"schedules need a SqlRepository, not {repository!r}") from exc
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
            row = conn.execute(_select_rows().where(schedules.c.id == schedule_id)).first()
        if row is None:
            raise schedule_not_found(schedule_id)
        return schedule_from_row(row)

    def get_by_request_id(self, request_id: str) -> ScheduleRow | None:
        """The schedule a CreateSchedule with this request_id created, if any."""
        with self._read() as conn:
            row = conn.execute(_select_rows().where(schedules.c.request_id == request_id)).first()
        return None if row is None else schedule_from_row(row)

    def list_schedules(
        self, *, page_size: int, page_token: str, pipeline_id: str
    ) -> Page[ScheduleRow]:
        """Schedules newest first, of one pipeline when ``pipeline_id`` is given."""
        limit = page_limit(page_size)
        digest = query_digest("schedules", pipeline_id)
        after = decode_token(page_token, digest, (int, str))
        query = _select_rows()
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

    def count_for_pipeline(self, pipeline_id: str) -> int:
        """How many schedules use the pipeline."""
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(schedules)
                    .where(schedules.c.pipeline_id == pipeline_id)
                ).scalar_one()
            )

    # --- fires ---------------------------------------------------------------------------------
    def claim_pending(
        self, now: datetime, lease_until: datetime, *, ignore_lease: bool, limit: int
    ) -> list[FireJob]:
        """Pending fires whose lease ran out (or all, with ``ignore_lease``), leased anew.

        Pending fires are the ones a process decided to start and may not have: it died, or
        starting failed. Their runs' request ids make starting them again idempotent.
        """
        with self.transaction() as tx:
            query = _select_jobs().where(schedule_fires.c.state == "pending")
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
                _select_jobs()
                .where(schedule_fires.c.state == "retrying", schedule_fires.c.retry_at <= now)
                .order_by(schedule_fires.c.retry_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=schedule_fires)
            ).all()
            jobs = [job_from_row(r) for r in rows]
            for job in jobs:
                tx.conn.execute(
                    _fire_update(job.fire).values(
                        state="pending", run_id=None, lease_until=lease_until, update_time=now
                    )
                )
        return [
            FireJob(replace(j.fire, state="pending", run_id=None), j.pipeline_id, j.config)
            for j in jobs
        ]

    def mark_started(self, fire: Fire, run_id: str, *, watch: bool, now: datetime) -> bool:
        """Record the run of a pending fire's attempt; False if the fire moved on meanwhile."""
        with self.transaction() as tx:
            result = tx.conn.execute(
                _fire_update(fire)
                .where(
                    schedule_fires.c.state == "pending",
                    schedule_fires.c.attempt == fire.attempt,
                )
                .values(
                    state="watching" if watch else "started",
                    run_id=run_id,
                    lease_until=None,
                    update_time=now,
                )
            )
        return result.rowcount == 1

    def mark_failed(self, fire: Fire, message: str, *, now: datetime) -> None:
        """A pending fire that cannot start, for good (its message says why)."""
        with self.transaction() as tx:
            tx.conn.execute(
                _fire_update(fire)
                .where(schedule_fires.c.state == "pending")
                .values(state="failed", message=message, lease_until=None, update_time=now)
            )

    def fire(self, schedule_id: str, scheduled_time: datetime) -> Fire | None:
        """One fire, if recorded."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(schedule_fires).where(
                    schedule_fires.c.schedule_id == schedule_id,
                    schedule_fires.c.scheduled_time == scheduled_time,
                )
            ).first()
        return None if row is None else fire_from_row(row)

    def fires(self, schedule_id: str) -> list[Fire]:
        """Every fire of a schedule, oldest first (for tests and operators)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(schedule_fires)
                .where(schedule_fires.c.schedule_id == schedule_id)
                .order_by(schedule_fires.c.scheduled_time)
            ).all()
        return [fire_from_row(r) for r in rows]

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


class ScheduleTx:
    """One write transaction over schedules and fires (see :meth:`ScheduleRepository.transaction`)."""

    def __init__(self, conn: sa.Connection, dialect: str) -> None:
        self.conn = conn
        self._dialect = dialect

    # --- schedules -----------------------------------------------------------------------------
    def insert(self, new: NewSchedule) -> ScheduleRow:
        """Store a new schedule (IntegrityError if the id is taken)."""
        self.conn.execute(
            schedules.insert().values(
                id=new.id,
                pipeline_id=new.pipeline_id,
                version_number=new.version_number,
                config=new.config.SerializeToString(deterministic=True),
                paused=False,
                pause_note="",
                fired_through=new.create_time,
                next_fire_time=new.next_fire_time,
                next_due_time=new.next_due_time,
                last_fire_time=None,
                runs_started=0,
                catchup_note="",
                request_id=new.request_id or None,
                revision=1,
                create_time=new.create_time,
                update_time=new.create_time,
            )
        )
        return self.lock(new.id)

    def lock(self, schedule_id: str) -> ScheduleRow:
        """The schedule, locked until commit; NotFoundError if there is none."""
        row = self.conn.execute(
            _select_rows()
            .where(schedules.c.id == schedule_id)
            .with_for_update(of=schedules, key_share=True)
        ).first()
        if row is None:
            raise schedule_not_found(schedule_id)
        return schedule_from_row(row)

    def lock_due(self, now: datetime, limit: int) -> list[ScheduleRow]:
        """Up to ``limit`` active schedules due at ``now``, earliest first, locked.

        Rows another replica holds are skipped, not waited for: that replica is deciding
        about them, and once it commits they are no longer due.
        """
        rows = self.conn.execute(
            _select_rows()
            .where(schedules.c.paused.is_(False), schedules.c.next_due_time <= now)
            .order_by(schedules.c.next_due_time)
            .limit(limit)
            .with_for_update(of=schedules, skip_locked=True, key_share=True)
        ).all()
        return [schedule_from_row(r) for r in rows]

    def update(self, row: ScheduleRow, *, user_change: bool, now: datetime, **values: Any) -> None:
        """Change columns of a locked schedule; a user's change bumps its etag."""
        if "config" in values:
            values["config"] = values["config"].SerializeToString(deterministic=True)
        if user_change:
            values["revision"] = schedules.c.revision + 1
        self.conn.execute(
            schedules.update()
            .where(schedules.c.id == row.id)
            .values(update_time=now if user_change else schedules.c.update_time, **values)
        )

    def delete(self, row: ScheduleRow) -> None:
        """Delete a locked schedule and its fire records; its runs stay."""
        self.conn.execute(schedules.delete().where(schedules.c.id == row.id))

    def reread(self, schedule_id: str) -> ScheduleRow:
        """The schedule as this transaction sees it now."""
        row = self.conn.execute(_select_rows().where(schedules.c.id == schedule_id)).first()
        if row is None:
            raise schedule_not_found(schedule_id)
        return schedule_from_row(row)

    # --- overlap -------------------------------------------------------------------------------
    def occupancy(self, rows: Sequence[ScheduleRow]) -> dict[str, Occupancy]:
        """What keeps each schedule busy, in two queries for the whole batch."""
        if not rows:
            return {}
        names = {f"schedules/{r.id}": r.id for r in rows}
        active: dict[str, list[str]] = {r.id: [] for r in rows}
        for schedule, run_id in self.conn.execute(
            sa.select(runs.c.schedule, runs.c.id).where(
                runs.c.schedule.in_(list(names)), runs.c.state.in_(ACTIVE_RUN_STATES)
            )
        ):
            active[names[schedule]].append(run_id)
        waiting: dict[str, int] = {}
        buffered: dict[str, int] = {}
        for schedule_id, state, count in self.conn.execute(
            sa.select(schedule_fires.c.schedule_id, schedule_fires.c.state, sa.func.count())
            .where(
                schedule_fires.c.schedule_id.in_([r.id for r in rows]),
                schedule_fires.c.state.in_((*_OCCUPYING, "buffered")),
            )
            .group_by(schedule_fires.c.schedule_id, schedule_fires.c.state)
        ):
            into = buffered if state == "buffered" else waiting
            into[schedule_id] = into.get(schedule_id, 0) + count
        return {
            r.id: Occupancy(
                active_runs=tuple(sorted(active[r.id])),
                waiting=waiting.get(r.id, 0),
                buffered=buffered.get(r.id, 0),
            )
            for r in rows
        }

    # --- recording decisions -----------------------------------------------------------------
    def record(
        self,
        row: ScheduleRow,
        decisions: Sequence[FireDecision],
        *,
        origin: str,
        now: datetime,
        lease_until: datetime,
        request_id: str | None = None,
    ) -> tuple[list[FireJob], set[datetime]]:
        """Insert one fire row per decision, skipping times that have one already.

        A pending fire gets the version it will run (the pinned one, or the pipeline's
        default now) and a lease: the caller starts it. Without any version to run it is
        recorded failed instead.

        Returns:
            The pending fires to start, and the times that were recorded before.
        """
        version = row.version_to_run()
        values = []
        for d in decisions:
            state, message = d.state, d.message
            if state == "pending" and version is None:
                state, message = "failed", "the pipeline has no version to run"
            values.append(
                {
                    "schedule_id": row.id,
                    "scheduled_time": d.scheduled_time,
                    "origin": origin,
                    "state": state,
                    "attempt": 1,
                    "version_number": version if state == "pending" else None,
                    "run_id": None,
                    "cancel_others": d.cancel_others,
                    "retry_at": None,
                    "lease_until": lease_until if state == "pending" else None,
                    "request_id": request_id,
                    "message": message,
                    "create_time": now,
                    "update_time": now,
                }
            )
        if not values:
            return [], set()
        inserted = self._insert_new(values)
        existing = {d.scheduled_time for d in decisions} - inserted
        jobs = [
            FireJob(fire_from_values(v), row.pipeline_id, row.config)
            for v in values
            if v["state"] == "pending" and v["scheduled_time"] in inserted
        ]
        if any(j.fire.cancel_others for j in jobs):
            # CANCEL_OTHER: the new fire supersedes retries still waiting for their turn.
            self.conn.execute(
                schedule_fires.update()
                .where(
                    schedule_fires.c.schedule_id == row.id,
                    schedule_fires.c.state == "retrying",
                )
                .values(state="started", message="superseded by a later fire", update_time=now)
            )
        return jobs, existing

    def advance(self, row: ScheduleRow, advance: Advance, runs_started: int) -> None:
        """Move a locked schedule's cursor (not a user change: the etag stays)."""
        self.conn.execute(
            schedules.update()
            .where(schedules.c.id == row.id)
            .values(
                fired_through=advance.fired_through,
                next_fire_time=advance.next_fire_time,
                next_due_time=advance.next_due_time,
                last_fire_time=advance.last_fire_time,
                runs_started=runs_started,
                catchup_note=(
                    row.catchup_note if advance.catchup_note is None else advance.catchup_note
                ),
            )
        )

    def fire_by_request_id(self, request_id: str) -> Fire | None:
        row = self.conn.execute(
            sa.select(schedule_fires).where(schedule_fires.c.request_id == request_id)
        ).first()
        return None if row is None else fire_from_row(row)

    def fires_at(self, schedule_id: str, times: Iterable[datetime]) -> dict[datetime, Fire]:
        """The recorded fires of a schedule among ``times``."""
        wanted = list(times)
        found: dict[datetime, Fire] = {}
        for start in range(0, len(wanted), 500):
            for row in self.conn.execute(
                sa.select(schedule_fires).where(
                    schedule_fires.c.schedule_id == schedule_id,
                    schedule_fires.c.scheduled_time.in_(wanted[start : start + 500]),
                )
            ):
                fire = fire_from_row(row)
                found[fire.scheduled_time] = fire
        return found

    def forget(self, fires: Iterable[Fire]) -> None:
        """Delete skipped fire records, so that a backfill can decide about them again."""
        for fire in fires:
            self.conn.execute(
                schedule_fires.delete().where(
                    schedule_fires.c.schedule_id == fire.schedule_id,
                    schedule_fires.c.scheduled_time == fire.scheduled_time,
                    schedule_fires.c.state == "skipped",
                )
            )

    def lease(self, fires: Iterable[Fire], lease_until: datetime, now: datetime) -> None:
        for fire in fires:
            self.conn.execute(_fire_update(fire).values(lease_until=lease_until, update_time=now))

    # --- buffered fires and retries ------------------------------------------------------------
    def buffered_schedule_ids(self) -> list[str]:
        """Schedules with buffered fires."""
        return list(
            self.conn.execute(
                sa.select(schedule_fires.c.schedule_id)
                .where(schedule_fires.c.state == "buffered")
                .distinct()
            ).scalars()
        )

    def lock_some(self, schedule_ids: Sequence[str]) -> list[ScheduleRow]:
        """The named schedules that no other transaction holds, locked."""
        if not schedule_ids:
            return []
        rows = self.conn.execute(
            _select_rows()
            .where(schedules.c.id.in_(list(schedule_ids)))
            .with_for_update(of=schedules, skip_locked=True, key_share=True)
        ).all()
        return [schedule_from_row(r) for r in rows]

    def promote_buffered(
        self, row: ScheduleRow, *, now: datetime, lease_until: datetime
    ) -> FireJob | None:
        """Turn the schedule's earliest buffered fire pending, with the version it runs."""
        found = self.conn.execute(
            sa.select(schedule_fires)
            .where(schedule_fires.c.schedule_id == row.id, schedule_fires.c.state == "buffered")
            .order_by(schedule_fires.c.scheduled_time)
            .limit(1)
        ).first()
        if found is None:
            return None
        fire = fire_from_row(found)
        version = row.version_to_run()
        if version is None:
            self.conn.execute(
                _fire_update(fire).values(
                    state="failed", message="the pipeline has no version to run", update_time=now
                )
            )
            return None
        self.conn.execute(
            _fire_update(fire).values(
                state="pending", version_number=version, lease_until=lease_until, update_time=now
            )
        )
        return FireJob(
            replace(fire, state="pending", version_number=version),
            row.pipeline_id,
            row.config,
        )

    def ended_watches(self, limit: int) -> list[tuple[FireJob, int, datetime | None]]:
        """Watched fires whose run has ended: (job, the run's state, its end time)."""
        rows = self.conn.execute(
            sa.select(
                *_job_columns(),
                runs.c.state.label("run_state"),
                runs.c.end_time.label("run_end_time"),
            )
            .select_from(
                schedule_fires.join(schedules, schedules.c.id == schedule_fires.c.schedule_id).join(
                    runs, runs.c.id == schedule_fires.c.run_id
                )
            )
            .where(
                schedule_fires.c.state == "watching",
                runs.c.state.in_(_TERMINAL_RUN_STATES),
            )
            .limit(limit)
            .with_for_update(of=schedule_fires, skip_locked=True)
        ).all()
        return [(job_from_row(r), r.run_state, r.run_end_time) for r in rows]

    def retry_later(self, fire: Fire, retry_at: datetime, now: datetime) -> None:
        """The fire's attempt failed: its next attempt starts at ``retry_at``."""
        self.conn.execute(
            _fire_update(fire).values(
                state="retrying", attempt=fire.attempt + 1, retry_at=retry_at, update_time=now
            )
        )

    def settle(self, fire: Fire, now: datetime) -> None:
        """Nothing is left to do for a watched fire."""
        self.conn.execute(_fire_update(fire).values(state="started", update_time=now))

    # --- internals -----------------------------------------------------------------------------
    def _insert_new(self, values: list[dict[str, Any]]) -> set[datetime]:
        """Insert fire rows, skipping keys that exist; the times actually inserted."""
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = (
            insert(schedule_fires)
            .on_conflict_do_nothing(index_elements=["schedule_id", "scheduled_time"])
            .returning(schedule_fires.c.scheduled_time)
        )
        return set(self.conn.execute(statement, values).scalars())


# --- rows and queries ----------------------------------------------------------------------------
def _select_rows() -> sa.Select[Any]:
    return sa.select(
        schedules, pipelines.c.default_version_number.label("default_version")
    ).select_from(schedules.join(pipelines, pipelines.c.id == schedules.c.pipeline_id))


def _job_columns() -> list[Any]:
    return [*schedule_fires.c, schedules.c.pipeline_id.label("s_pipeline_id"), schedules.c.config]


def _select_jobs() -> sa.Select[Any]:
    return sa.select(*_job_columns()).select_from(
        schedule_fires.join(schedules, schedules.c.id == schedule_fires.c.schedule_id)
    )


def _fire_update(fire: Fire) -> sa.Update:
    return schedule_fires.update().where(
        schedule_fires.c.schedule_id == fire.schedule_id,
        schedule_fires.c.scheduled_time == fire.scheduled_time,
    )
