"""One write transaction over schedules and fires, and the queries it shares with
:mod:`.schedules` (see there for how rows are locked)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from control_plane.storage._schedule_rows import (
    Advance,
    Fire,
    FireDecision,
    FireJob,
    NewSchedule,
    Occupancy,
    ScheduleRow,
    fire_from_row,
    fire_from_values,
    job_from_row,
    schedule_from_row,
    schedule_not_found,
)
from control_plane.storage._schedule_tables import schedule_fires, schedules
from control_plane.storage._tables import ACTIVE_RUN_STATES, pipelines, runs

__all__ = ["TERMINAL_RUN_STATES", "ScheduleTx", "fire_update", "select_jobs", "select_rows"]

# Fire states that hold a schedule "running" for the overlap policies besides its active
# runs: decided but not started yet, or between the attempts of a retry.
_OCCUPYING = ("pending", "retrying")
TERMINAL_RUN_STATES = (3, 4, 6)  # Run.State SUCCEEDED, FAILED, CANCELLED


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
                paused=new.paused,
                pause_note=new.pause_note,
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
                creator=new.creator,
                updater=new.creator,
            )
        )
        return self.lock(new.id)

    def lock(self, schedule_id: str) -> ScheduleRow:
        """The schedule, locked until commit; NotFoundError if there is none."""
        row = self.conn.execute(
            select_rows()
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
            select_rows()
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
        row = self.conn.execute(select_rows().where(schedules.c.id == schedule_id)).first()
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

    def times_with_runs(self, row: ScheduleRow, times: Iterable[datetime]) -> set[datetime]:
        """Those of ``times`` for which a run of the schedule exists (its fire record may
        have been pruned since: see :meth:`ScheduleRepository.prune_fires`)."""
        wanted = list(times)
        found: set[datetime] = set()
        for start in range(0, len(wanted), 500):
            found.update(
                self.conn.execute(
                    sa.select(runs.c.scheduled_time).where(
                        runs.c.schedule == row.name,
                        runs.c.scheduled_time.in_(wanted[start : start + 500]),
                    )
                ).scalars()
            )
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
            self.conn.execute(fire_update(fire).values(lease_until=lease_until, update_time=now))

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
            select_rows()
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
                fire_update(fire).values(
                    state="failed", message="the pipeline has no version to run", update_time=now
                )
            )
            return None
        self.conn.execute(
            fire_update(fire).values(
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
                *job_columns(),
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
                runs.c.state.in_(TERMINAL_RUN_STATES),
            )
            .limit(limit)
            .with_for_update(of=schedule_fires, skip_locked=True)
        ).all()
        return [(job_from_row(r), r.run_state, r.run_end_time) for r in rows]

    def retry_later(self, fire: Fire, retry_at: datetime, now: datetime) -> None:
        """The fire's attempt failed: its next attempt starts at ``retry_at``."""
        self.conn.execute(
            fire_update(fire).values(
                state="retrying", attempt=fire.attempt + 1, retry_at=retry_at, update_time=now
            )
        )

    def settle(self, fire: Fire, now: datetime) -> None:
        """Nothing is left to do for a watched fire."""
        self.conn.execute(fire_update(fire).values(state="started", update_time=now))

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
def select_rows() -> sa.Select[Any]:
    return sa.select(
        schedules, pipelines.c.default_version_number.label("default_version")
    ).select_from(schedules.join(pipelines, pipelines.c.id == schedules.c.pipeline_id))


def job_columns() -> list[Any]:
    return [*schedule_fires.c, schedules.c.pipeline_id.label("s_pipeline_id"), schedules.c.config]


def select_jobs() -> sa.Select[Any]:
    return sa.select(*job_columns()).select_from(
        schedule_fires.join(schedules, schedules.c.id == schedule_fires.c.schedule_id)
    )


def fire_update(fire: Fire) -> sa.Update:
    return schedule_fires.update().where(
        schedule_fires.c.schedule_id == fire.schedule_id,
        schedule_fires.c.scheduled_time == fire.scheduled_time,
    )
