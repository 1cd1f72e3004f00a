"""Runs: the tracking column, the run's record in the experiment tracker (MLflow).

``Run.tracking`` (a ``TrackingInfo``) is stored serialized, NULL until the tracker records
something, so existing rows need no rewrite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("tracking", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("tracking")
