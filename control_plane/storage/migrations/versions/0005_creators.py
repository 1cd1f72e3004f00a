"""Who made what: the principal that stored each pipeline version, created each run and
schedule, and made a schedule's last change (docs/security.md).

Rows from before have no principal recorded: their columns are empty strings, which the API
shows as an empty creator, so existing rows need no rewrite.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("pipeline_versions", "creator"),
    ("runs", "creator"),
    ("schedules", "creator"),
    ("schedules", "updater"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        op.add_column(table, sa.Column(column, sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    for table in ("schedules", "runs", "pipeline_versions"):
        with op.batch_alter_table(table) as batch:
            for name, column in COLUMNS:
                if name == table:
                    batch.drop_column(column)
