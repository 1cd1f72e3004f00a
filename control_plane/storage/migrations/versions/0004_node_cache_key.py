"""Node executions: the cache_key column and its index, for the cross-run output cache.

NULL for every existing row (no node was cached before), so nothing is rewritten.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("node_executions", sa.Column("cache_key", sa.String(64), nullable=True))
    op.create_index("ix_node_executions_cache_key", "node_executions", ["cache_key"])


def downgrade() -> None:
    op.drop_index("ix_node_executions_cache_key", table_name="node_executions")
    with op.batch_alter_table("node_executions") as batch:
        batch.drop_column("cache_key")
