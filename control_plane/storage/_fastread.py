"""A prepared single-row lookup that bypasses SQLAlchemy's per-call machinery on SQLite.

GetPipeline is the control plane's hottest read and is benchmarked against a bare gRPC
server. On SQLite, executing a Core statement costs about 50 microseconds of SQLAlchemy
bookkeeping (events, execution contexts, result metadata) around a 5-microsecond lookup.
This compiles the statement once, runs it on a raw DB-API connection from the same pool (so
the pool's connect hooks and reset-on-return still apply), and converts the row with the
very result processors the column types would use, so values come out exactly as through a
normal execution: about 20 microseconds in all.

On PostgreSQL the network round trips dominate, and a raw connection would add one (the
driver's implicit transaction must be rolled back), so there it is a plain execution on the
autocommit engine.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

__all__ = ["FastLookup"]


class FastLookup:
    """``lookup(params)``: the first row of a SELECT, with attribute access, or None."""

    def __init__(self, pool: sa.Engine, autocommit: sa.Engine, statement: sa.Select[Any]) -> None:
        """Prepare ``statement`` for the pool's database.

        Args:
            pool: The engine whose pool lends raw connections (SQLite).
            autocommit: The engine that runs single statements without a transaction, for
                other databases.
            statement: A SELECT with named bind parameters.
        """
        self._pool = pool
        self._autocommit = autocommit
        self._statement = statement
        self._raw = pool.dialect.name == "sqlite"
        dialect = pool.dialect
        compiled = statement.compile(dialect=dialect)
        self._sql = str(compiled)
        # SQLite's "?" parameters take a tuple in the compiled order.
        self._order = tuple(compiled.positiontup or ())
        columns = list(statement.selected_columns)
        self._processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self._row_type = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]

    def __call__(self, params: Mapping[str, Any]) -> Any | None:
        if not self._raw:
            with self._autocommit.connect() as conn:
                return conn.execute(self._statement, params).first()
        connection = self._pool.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, tuple(params[name] for name in self._order))
                raw = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool
        if raw is None:
            return None
        return self._row_type(
            *(
                value if process is None else process(value)
                for process, value in zip(self._processors, raw, strict=True)
            )
        )
