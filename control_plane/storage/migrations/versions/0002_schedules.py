"""Schedules: the schedules table, one row per fire decision, and runs unique per attempt.

A schedule's retries are new runs for the same scheduled_time, so the unique index over runs
becomes (schedule, scheduled_time, attempt), where the attempt is the run's
``raypipe.dev/attempt`` label (absent: 1). The index is over an expression of the labels
column, so creating runs needs no new column and no change to how they are written.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen history: types spelled out, as in 0001.
_TIME = sa.DateTime(timezone=True)

_OLD_RUNS_INDEX = "uq_runs_schedule_scheduled_time"
_NEW_RUNS_INDEX = "uq_runs_schedule_scheduled_time_attempt"
# The attempt as text, "1" for a run without the label; the same expression on both
# databases, spelled in each one's JSON syntax.
_ATTEMPT = {
    "sqlite": """COALESCE(json_extract(labels, '$."raypipe.dev/attempt"'), '1')""",
    "postgresql": "(COALESCE(labels ->> 'raypipe.dev/attempt', '1'))",
}


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("version_number", sa.BigInteger, nullable=True),
        sa.Column("config", sa.LargeBinary, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("pause_note", sa.Text, nullable=False),
        sa.Column("fired_through", _TIME, nullable=False),
        sa.Column("next_fire_time", _TIME, nullable=True),
        sa.Column("next_due_time", _TIME, nullable=True),
        sa.Column("last_fire_time", _TIME, nullable=True),
        sa.Column("runs_started", sa.BigInteger, nullable=False),
        sa.Column("catchup_note", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(256), nullable=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipelines.id"],
            name="fk_schedules_pipeline_id_pipelines",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_schedules_request_id",
        "schedules",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_index("ix_schedules_next_due_time", "schedules", ["next_due_time"])
    op.create_index("ix_schedules_create_time_id", "schedules", ["create_time", "id"])
    op.create_index(
        "ix_schedules_pipeline_id_create_time_id",
        "schedules",
        ["pipeline_id", "create_time", "id"],
    )

    op.create_table(
        "schedule_fires",
        sa.Column("schedule_id", sa.String(63), nullable=False),
        sa.Column("scheduled_time", _TIME, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("version_number", sa.BigInteger, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("cancel_others", sa.Boolean, nullable=False),
        sa.Column("retry_at", _TIME, nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("request_id", sa.String(256), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "scheduled_time", name="pk_schedule_fires"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id_schedules",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_schedule_fires_request_id",
        "schedule_fires",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_index(
        "ix_schedule_fires_state_schedule_id", "schedule_fires", ["state", "schedule_id"]
    )
    op.create_index(
        "ix_schedule_fires_schedule_id_state", "schedule_fires", ["schedule_id", "state"]
    )

    # Retries are runs for the same (schedule, scheduled_time) with the next attempt number.
    op.drop_index(_OLD_RUNS_INDEX, table_name="runs")
    attempt = _ATTEMPT[op.get_bind().dialect.name]
    op.execute(
        f"CREATE UNIQUE INDEX {_NEW_RUNS_INDEX} ON runs (schedule, scheduled_time, {attempt}) "
        "WHERE schedule IS NOT NULL"
    )


def downgrade() -> None:
    # Fails if retries exist (two runs for one scheduled_time), as it must: the old index
    # cannot hold them.
    op.drop_index(_NEW_RUNS_INDEX, table_name="runs")
    op.create_index(
        _OLD_RUNS_INDEX,
        "runs",
        ["schedule", "scheduled_time"],
        unique=True,
        sqlite_where=sa.text("schedule IS NOT NULL"),
        postgresql_where=sa.text("schedule IS NOT NULL"),
    )
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
