"""The scheduler's tables, on the same SQLAlchemy metadata as :mod:`._tables`.

Migration ``0002_schedules`` creates them. Two tables:

``schedules``
    One row per schedule. What a user sets is stored as a serialized ``Schedule`` message
    holding only the user-settable fields (``config``), so storage never drifts from the
    proto; the pipeline, the pinned version and what the firing loop reads and writes are
    columns. ``next_due_time`` (the next nominal fire time plus its jitter) is the column
    the loop's "what is due?" query walks.

``schedule_fires``
    One row per nominal fire time a schedule decided something about: the row is written
    in the same transaction that advances the schedule past that time, and its primary key
    ``(schedule_id, scheduled_time)`` makes the decision happen once, whichever replica
    takes it. ``state`` says where the fire stands (see :data:`FIRE_STATES`); the
    ``pending`` rows are the work a crashed process left behind. Buffered fires
    (BUFFER_ONE, BUFFER_ALL) are rows in state ``buffered``: that is the buffer.
"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.storage._tables import UtcDateTime, metadata

__all__ = [
    "ATTEMPT_LABEL",
    "FIRE_STATES",
    "schedule_fires",
    "schedules",
]

#: The run label that numbers the attempts of one fire (1, 2, ... for retries). The unique
#: index over runs covers (schedule, scheduled_time, attempt), so every attempt of every
#: fire exists at most once. Keys with a "/" cannot be set through CreateRun, so a user
#: cannot forge it.
ATTEMPT_LABEL = "raypipe.dev/attempt"

#: What a fire row's ``state`` can be, and what the scheduler still owes it.
FIRE_STATES = (
    # Decided: a run is to be started (or was, by a process that died before it recorded
    # the run). Whoever holds the lease starts it; the run's request_id makes that
    # idempotent.
    "pending",
    # A run was started and the scheduler waits for its end, because a failure would be
    # retried.
    "watching",
    # A run was started; nothing is left to do.
    "started",
    # The last attempt failed; the next one starts at ``retry_at``.
    "retrying",
    # Waiting for the schedule's running run to end (BUFFER_ONE, BUFFER_ALL).
    "buffered",
    # Not run, by the overlap policy (``message`` says why).
    "skipped",
    # Could not be started (``message`` says why): the pipeline has no version any more.
    "failed",
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    # A forced DeletePipeline deletes the pipeline's schedules with it; the runs they
    # started are kept (runs have no foreign key).
    sa.Column(
        "pipeline_id",
        sa.String(63),
        sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The pinned version; NULL follows the pipeline's default version at each fire.
    sa.Column("version_number", sa.BigInteger, nullable=True),
    # Schedule.SerializeToString(deterministic=True) of the user-settable fields only.
    sa.Column("config", sa.LargeBinary, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("pause_note", sa.Text, nullable=False),
    # Every nominal fire time at or before this instant is handled (fired, skipped or, after
    # a resume, dropped): the loop asks for fires after it.
    sa.Column("fired_through", UtcDateTime, nullable=False),
    # The next nominal fire time and when it is due (plus jitter); NULL when none is left.
    sa.Column("next_fire_time", UtcDateTime, nullable=True),
    sa.Column("next_due_time", UtcDateTime, nullable=True),
    # The nominal time of the latest fire the loop decided about.
    sa.Column("last_fire_time", UtcDateTime, nullable=True),
    # Fires that were started or buffered, for max_runs.
    sa.Column("runs_started", sa.BigInteger, nullable=False),
    # The last catch-up that hit its cap, for operators (the proto has no field for it yet).
    sa.Column("catchup_note", sa.Text, nullable=False),
    # CreateSchedule's idempotency key; NULL when the call had none.
    sa.Column("request_id", sa.String(256), nullable=True),
    # Bumped by every change a user makes (not by firing); the etag is derived from it.
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # Who made it (docs/security.md); "" for rows from before migration 0005.
    sa.Column("creator", sa.Text, nullable=False, server_default=""),
    # Who made the last change: create, update, pause, resume (migration 0005).
    sa.Column("updater", sa.Text, nullable=False, server_default=""),
    sa.Index(
        "uq_schedules_request_id",
        "request_id",
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    ),
    # The firing loop: due schedules, earliest first; and the minimum, to know how long
    # to sleep.
    sa.Index(None, "next_due_time"),
    # ListSchedules newest first, overall and per pipeline (also DeletePipeline's check).
    sa.Index(None, "create_time", "id"),
    sa.Index(None, "pipeline_id", "create_time", "id"),
)

schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column(
        "schedule_id",
        sa.String(63),
        sa.ForeignKey("schedules.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The nominal fire time (for TriggerSchedule, the time of the call). With schedule_id
    # the key: one decision per fire, across every replica and every crash.
    sa.Column("scheduled_time", UtcDateTime, primary_key=True),
    # "fire" (the loop), "trigger" (TriggerSchedule) or "backfill" (BackfillSchedule).
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # The attempt of the current (or next) run, counting from 1; retries increment it.
    sa.Column("attempt", sa.Integer, nullable=False),
    # The version the fire runs, resolved when it was decided to run (retries keep it).
    sa.Column("version_number", sa.BigInteger, nullable=True),
    # The run of the current attempt, once started.
    sa.Column("run_id", sa.String(64), nullable=True),
    # CANCEL_OTHER: cancel the schedule's other runs before starting this one.
    sa.Column("cancel_others", sa.Boolean, nullable=False),
    # When the next attempt of a "retrying" fire starts.
    sa.Column("retry_at", UtcDateTime, nullable=True),
    # A "pending" fire belongs to the process that decided it until then; after that any
    # replica may start it (a crash left it behind).
    sa.Column("lease_until", UtcDateTime, nullable=True),
    # TriggerSchedule's idempotency key.
    sa.Column("request_id", sa.String(256), nullable=True),
    # Why a fire was skipped or failed.
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Index(
        "uq_schedule_fires_request_id",
        "request_id",
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    ),
    # The loop's scans of the few fires that still need something (pending, watching,
    # retrying, buffered) among the many that are done.
    sa.Index(None, "state", "schedule_id"),
    # One schedule's fires that occupy it (overlap policies).
    sa.Index(None, "schedule_id", "state"),
)
