"""Which control-plane replica records each active run: a lease per run (docs/deploy.md).

``recorder`` names the replica that folds the engine's events into the run's record and
``recorder_until`` (seconds since the epoch) is when its lease lapses unless renewed; another
replica takes over a run whose lease has lapsed. Both are NULL for runs nobody records (every
run from before, and every run that has ended).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("recorder", sa.String(128), nullable=True))
    op.add_column("runs", sa.Column("recorder_until", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("recorder_until")
        batch.drop_column("recorder")
