"""The SQL implementation of :class:`~control_plane.storage.repository.Repository`.

One implementation serves SQLite (the embedded default: a file in the data directory) and
PostgreSQL (several control-plane replicas sharing one database), with SQLAlchemy Core and
the schema of :mod:`._tables`, created by the Alembic migrations in ``migrations/``. Each
method is one transaction of one of the kinds :mod:`._engine` describes: a lone read, a
snapshot read, or a write that holds its locks until commit.
"""

from __future__ import annotations

from control_plane.storage._engine import normalize_url
from control_plane.storage._sql_pipelines import PipelineQueries
from control_plane.storage._sql_recorders import RecorderQueries
from control_plane.storage._sql_runs import RunQueries

__all__ = ["SqlRepository", "normalize_url", "open_repository"]


def open_repository(url: str, *, exclusive: bool = False) -> SqlRepository:
    """Open the database at ``url``, migrate it to the newest schema, and return its repository.

    Args:
        url: ``sqlite:///path/to/raypipe.db`` or ``postgresql://user:pass@host/db``.
        exclusive: See :class:`SqlRepository`.
    """
    repository = SqlRepository(url, exclusive=exclusive)
    try:
        repository.migrate()
    except BaseException:
        repository.close()
        raise
    return repository


class SqlRepository(PipelineQueries, RunQueries, RecorderQueries):
    """Pipelines, versions, runs and their history in SQLite or PostgreSQL. Thread-safe.

    ``SqlRepository(url, exclusive=...)`` connects lazily; :func:`open_repository` also
    migrates. The queries live by domain in :mod:`._sql_pipelines`, :mod:`._sql_runs` and
    :mod:`._sql_recorders` (which replica records which run), on
    the connections and transactions of :mod:`._sql_base`.
    """
