"""Initial schema: pipelines, their versions, runs, node executions and run events.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migrations are frozen history: they spell their types out rather than import the
# application's, so later changes to _tables.py cannot rewrite what 0001 did.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("labels", _JSON, nullable=False),
        sa.Column("default_version_number", sa.BigInteger, nullable=True),
        sa.Column("latest_version_number", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipelines"),
    )
    op.create_index("ix_pipelines_create_time_id", "pipelines", ["create_time", "id"])

    op.create_table(
        "pipeline_versions",
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("version_number", sa.BigInteger, nullable=False),
        sa.Column("spec", sa.LargeBinary, nullable=False),
        sa.Column("spec_digest", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("pipeline_id", "version_number", name="pk_pipeline_versions"),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipelines.id"],
            name="fk_pipeline_versions_pipeline_id_pipelines",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("pipeline_id", sa.String(63), nullable=False),
        sa.Column("version_number", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("parameters", _JSON, nullable=False),
        sa.Column("labels", _JSON, nullable=False),
        sa.Column("request_id", sa.String(256), nullable=True),
        sa.Column("schedule", sa.String(256), nullable=True),
        sa.Column("scheduled_time", _TIME, nullable=True),
        sa.Column("retry_of", sa.String(64), nullable=False),
        sa.Column("error", sa.LargeBinary, nullable=True),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("start_time", _TIME, nullable=True),
        sa.Column("end_time", _TIME, nullable=True),
        sa.Column("update_time", _TIME, nullable=False),
        sa.Column("engine_cursor", sa.BigInteger, nullable=False),
        sa.Column("next_event_sequence", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index(
        "uq_runs_request_id",
        "runs",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_index(
        "uq_runs_schedule_scheduled_time",
        "runs",
        ["schedule", "scheduled_time"],
        unique=True,
        sqlite_where=sa.text("schedule IS NOT NULL"),
        postgresql_where=sa.text("schedule IS NOT NULL"),
    )
    op.create_index("ix_runs_create_time_id", "runs", ["create_time", "id"])
    op.create_index(
        "ix_runs_pipeline_id_create_time_id", "runs", ["pipeline_id", "create_time", "id"]
    )
    op.create_index("ix_runs_state_create_time", "runs", ["state", "create_time"])

    op.create_table(
        "node_executions",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "position", name="pk_node_executions"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_node_executions_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "node_id", name="uq_node_executions_run_id_node_id"),
    )

    op.create_table(
        "run_events",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "sequence", name="pk_run_events"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("node_executions")
    op.drop_table("runs")
    op.drop_table("pipeline_versions")
    op.drop_table("pipelines")
