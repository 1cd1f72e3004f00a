"""Alembic environment of the control plane's schema, run in code (no alembic.ini).

:func:`control_plane.storage.sql.migrate` builds the Alembic ``Config`` and passes the
connection to migrate in ``config.attributes["connection"]``, inside a transaction it holds
with a lock, so that control-plane replicas starting at once migrate one after the other.
For ``alembic revision --autogenerate`` during development, give a URL instead::

    python -m control_plane.storage.sql revision -m "add schedules" --url sqlite:///dev.db
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from control_plane.storage._tables import metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations instead of running it (``alembic upgrade --sql``)."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new one to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        # Inside the caller's transaction this does not begin another one.
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
