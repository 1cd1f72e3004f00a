"""Running the Alembic migrations in ``migrations/`` from code, without an alembic.ini.

Several control-plane processes may start at once against one database, so migrating is
serialized: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the
``BEGIN IMMEDIATE`` write lock that :mod:`.sql` takes for every write transaction. The
migrations run inside that transaction (both databases have transactional DDL), so a process
that dies half-way leaves the schema as it was.

Creating a new migration during development::

    python -m control_plane.storage._migrate revision "add schedules" sqlite:///dev.db
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# An arbitrary constant naming raypipe's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x7261797069706531


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration of the control plane's schema.

    Args:
        url: A database URL for Alembic to connect to itself; leave it out when the caller
            passes a connection in ``config.attributes["connection"]``.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser interpolation would read a "%" in a URL-encoded password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the database is at; None before the first migration."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: sa.Connection, revision: str = "head") -> None:
    """Migrate the database to ``revision`` inside the transaction ``conn`` has begun.

    Args:
        conn: A connection in a write transaction (for SQLite, one begun ``IMMEDIATE``).
        revision: The target; the newest by default.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    if revision == "head" and current_revision(conn) == head_revision():
        return  # the common case at every start: nothing to do, and no Alembic set-up
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "revision":
        print(
            "usage: python -m control_plane.storage._migrate revision MESSAGE DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    _, message, url = argv
    config = alembic_config(url)
    command.upgrade(config, "head")
    # Revisions are numbered 0001, 0002, ... so that their files sort in order.
    count = len(list(ScriptDirectory.from_config(config).walk_revisions()))
    command.revision(config, message=message, autogenerate=True, rev_id=f"{count + 1:04d}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
