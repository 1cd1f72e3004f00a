"""The control plane's tables, as SQLAlchemy Core metadata.

This is the schema the code reads and writes; the Alembic migrations in ``migrations/`` create
it, and a test checks that migrating to head yields exactly these tables. The same schema
serves SQLite and PostgreSQL: partial unique indexes and JSON exist in both.

Resources keep their API shape where the API owns it: a version's spec, a node's execution
record, a run's events and errors are stored as serialized protobuf bytes, so storage never
drifts from the proto. What queries filter or sort on (ids, numbers, states, times, labels)
are real columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

__all__ = [
    "ACTIVE_RUN_STATES",
    "UtcDateTime",
    "metadata",
    "node_executions",
    "pipeline_versions",
    "pipelines",
    "run_events",
    "runs",
]

# Run.State values that are not terminal: PENDING, RUNNING, CANCELLING (see run.proto).
ACTIVE_RUN_STATES: tuple[int, ...] = (1, 2, 5)

# Constraint names are fixed so that later migrations can refer to them on both databases.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp with microseconds, on every database.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: SQLAlchemy stores the text
    ``YYYY-MM-DD HH:MM:SS.ffffff``, which sorts correctly only if every value is in the same
    zone, so values are converted to UTC before they are written and marked UTC when read.
    A naive datetime is taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite's text format has no zone; drop it after normalizing (PostgreSQL keeps it).
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> sa.types.TypeEngine[Any]:
    # JSONB on PostgreSQL: compact, and label filters (`labels ->> 'k'`) can use GIN or
    # expression indexes later without a type change.
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("labels", _json(), nullable=False),
    # The number of the default version, NULL until the first version exists.
    sa.Column("default_version_number", sa.BigInteger, nullable=True),
    # The counter that numbers versions: CreatePipelineVersion increments it while it holds
    # this row's lock, so numbers never repeat and never skip.
    sa.Column("latest_version_number", sa.BigInteger, nullable=False),
    # Bumped by every change of the row; the etag is derived from it.
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # ListPipelines pages newest first by (create_time, id).
    sa.Index(None, "create_time", "id"),
)

pipeline_versions = sa.Table(
    "pipeline_versions",
    metadata,
    sa.Column(
        "pipeline_id",
        sa.String(63),
        sa.ForeignKey("pipelines.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The primary key (pipeline_id, version_number) is the unique backstop of numbering and
    # the index ListPipelineVersions walks backwards, page by page.
    sa.Column("version_number", sa.BigInteger, primary_key=True),
    # PipelineSpec.SerializeToString(deterministic=True).
    sa.Column("spec", sa.LargeBinary, nullable=False),
    sa.Column("spec_digest", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    # Who made it (docs/security.md); "" for rows from before migration 0005.
    sa.Column("creator", sa.Text, nullable=False, server_default=""),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # No foreign key to pipelines: a forced DeletePipeline keeps the history of its runs.
    sa.Column("pipeline_id", sa.String(63), nullable=False),
    sa.Column("version_number", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    # Run.parameters as JSON values (google.protobuf.Value's JSON mapping).
    sa.Column("parameters", _json(), nullable=False),
    sa.Column("labels", _json(), nullable=False),
    # NULL rather than "" when absent, so the partial unique indexes below skip them and
    # SQLite can prove that a lookup `request_id = ?` may use its index.
    sa.Column("request_id", sa.String(256), nullable=True),
    sa.Column("schedule", sa.String(256), nullable=True),
    sa.Column("scheduled_time", UtcDateTime, nullable=True),
    sa.Column("retry_of", sa.String(64), nullable=False),
    # ExecutionError.SerializeToString(), NULL when the run has no error.
    sa.Column("error", sa.LargeBinary, nullable=True),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("start_time", UtcDateTime, nullable=True),
    sa.Column("end_time", UtcDateTime, nullable=True),
    sa.Column("update_time", UtcDateTime, nullable=False),
    # TrackingInfo.SerializeToString() (the run's MLflow record), NULL until the tracker has
    # recorded something (migration 0003).
    sa.Column("tracking", sa.LargeBinary, nullable=True),
    # Who made it (docs/security.md); "" for rows from before migration 0005.
    sa.Column("creator", sa.Text, nullable=False, server_default=""),
    # The last engine event folded into the record; a restarted control plane resumes after it.
    sa.Column("engine_cursor", sa.BigInteger, nullable=False),
    # The sequence number the run's next event gets (events count from 1 without gaps).
    sa.Column("next_event_sequence", sa.BigInteger, nullable=False),
    # The control-plane replica that records the run's engine events, and when its lease
    # lapses (seconds since the epoch) unless it renews it; NULL when nobody records the run
    # (migration 0006; control_plane.runs.supervisor).
    sa.Column("recorder", sa.String(128), nullable=True),
    sa.Column("recorder_until", sa.Float, nullable=True),
    # CreateRun retried with the same request_id returns the first run.
    sa.Index(
        "uq_runs_request_id",
        "request_id",
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    ),
    # A schedule starts at most one run per (nominal time, attempt), across every control-plane
    # replica: the unique index uq_runs_schedule_scheduled_time_attempt over (schedule,
    # scheduled_time, the run's raypipe.dev/attempt label) is an expression index whose
    # expression differs between SQLite and PostgreSQL, so migration 0002 creates it and it is
    # not declared here (tests/integration/test_storage.py checks that it exists).
    # ListRuns newest first, overall and per pipeline; active runs for DeletePipeline's check
    # and for re-attaching after a restart.
    sa.Index(None, "create_time", "id"),
    sa.Index(None, "pipeline_id", "create_time", "id"),
    sa.Index(None, "state", "create_time"),
)

node_executions = sa.Table(
    "node_executions",
    metadata,
    sa.Column(
        "run_id",
        sa.String(64),
        sa.ForeignKey("runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The node's index in the spec: GetRun returns nodes in the spec's order.
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("node_id", sa.String(63), nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    # NodeExecution.SerializeToString(); node_id and state above are copies for queries.
    sa.Column("data", sa.LargeBinary, nullable=False),
    # NodeExecution.cache_key, copied for the cross-run cache lookup; NULL when not cached.
    sa.Column("cache_key", sa.String(64), nullable=True),
    sa.UniqueConstraint("run_id", "node_id"),
    sa.Index("ix_node_executions_cache_key", "cache_key"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column(
        "run_id",
        sa.String(64),
        sa.ForeignKey("runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    # RunEvent.SerializeToString(), sequence included.
    sa.Column("data", sa.LargeBinary, nullable=False),
)
