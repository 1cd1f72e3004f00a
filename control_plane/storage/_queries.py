"""Pieces of queries and errors shared by the repository's methods."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.storage._convert import from_micros, pipeline_name, version_name
from control_plane.storage._paging import encode_token
from control_plane.storage._tables import node_executions
from control_plane.storage.repository import LabelTerm, Page
from raypipe.v1 import run_pb2

__all__ = [
    "before",
    "build_page",
    "node_blobs",
    "pipeline_not_found",
    "replace_nodes",
    "run_not_found",
    "schedule_name",
    "term_clauses",
    "terms_key",
    "version_not_found",
]

_LABEL_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,63}")
# Plain columns a filter may compare; the parser in control_plane.filtering agrees.
_TEXT_FIELDS = frozenset({"display_name"})


def schedule_name(schedule: str) -> str | None:
    """``schedules/{id}`` for a schedule given by id or by name; None for none."""
    if not schedule:
        return None
    return schedule if schedule.startswith("schedules/") else f"schedules/{schedule}"


def terms_key(terms: Sequence[LabelTerm]) -> list[list[str]]:
    # Order does not change what an AND of terms means, so it must not change the digest.
    return sorted([t.key, t.op, t.value] for t in terms)


def term_clauses(table: sa.Table, terms: Sequence[LabelTerm]) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    for term in terms:
        if term.op not in ("=", "!=", ":*"):
            raise InvalidArgumentError.for_field("filter", f"unknown operator '{term.op}'")
        if term.key.startswith("labels."):
            key = term.key.removeprefix("labels.")
            if not _LABEL_KEY.fullmatch(key):
                raise InvalidArgumentError.for_field("filter", f"'{key}' is not a label key")
            column: sa.ColumnElement[Any] = table.c.labels[key].as_string()
        elif term.key in _TEXT_FIELDS:
            if term.op == ":*":
                raise InvalidArgumentError.for_field(
                    "filter", f"':*' applies to labels only, not to '{term.key}'"
                )
            column = table.c[term.key]
        else:
            raise InvalidArgumentError.for_field("filter", f"cannot filter on '{term.key}'")
        if term.op == "=":
            clauses.append(column == term.value)
        elif term.op == "!=":
            # The negation of "=": a resource without the label does not equal the value.
            clauses.append(sa.or_(column.is_(None), column != term.value))
        else:
            clauses.append(column.is_not(None))
    return clauses


def before(table: sa.Table, key: list[Any]) -> sa.ColumnElement[bool]:
    """Rows after the page token's key ``[create_time micros, id]`` in newest-first order.

    A row-value comparison, which both databases answer with a range scan of the
    ``(create_time, id)`` index.
    """
    return sa.tuple_(table.c.create_time, table.c.id) < sa.tuple_(
        sa.literal(from_micros(key[0]), table.c.create_time.type), sa.literal(key[1])
    )


def build_page(
    rows: Sequence[Any],
    limit: int,
    convert: Callable[[Any], Any],
    key: Callable[[Any], list[Any]],
    digest: str,
) -> Page[Any]:
    items = [convert(row) for row in rows[:limit]]
    token = encode_token(digest, key(rows[limit - 1])) if len(rows) > limit else ""
    return Page(items=items, next_page_token=token)


def pipeline_not_found(pipeline_id: str) -> NotFoundError:
    name = pipeline_name(pipeline_id)
    return NotFoundError(
        f"pipeline '{name}' not found", reason="PIPELINE_NOT_FOUND", metadata={"pipeline": name}
    )


def version_not_found(pipeline_id: str, version_number: int) -> NotFoundError:
    name = version_name(pipeline_id, version_number)
    return NotFoundError(
        f"pipeline version '{name}' not found",
        reason="PIPELINE_VERSION_NOT_FOUND",
        metadata={"pipeline_version": name},
    )


def run_not_found(run_id: str) -> NotFoundError:
    name = f"runs/{run_id}"
    return NotFoundError(f"run '{name}' not found", reason="RUN_NOT_FOUND", metadata={"run": name})


def node_blobs(
    conn: sa.Connection, run_ids: Sequence[str], node_ids: Collection[str] | None = None
) -> dict[str, list[bytes]]:
    """The serialized NodeExecutions of each run, in spec order, in one query; only those
    named by ``node_ids`` when it is given."""
    if not run_ids:
        return {}
    out: dict[str, list[bytes]] = {run_id: [] for run_id in run_ids}
    query = sa.select(node_executions.c.run_id, node_executions.c.data).where(
        node_executions.c.run_id.in_(run_ids)
    )
    if node_ids is not None:
        if not node_ids:
            return out
        query = query.where(node_executions.c.node_id.in_(sorted(node_ids)))
    rows = conn.execute(query.order_by(node_executions.c.run_id, node_executions.c.position))
    for run_id, data in rows:
        out[run_id].append(data)
    return out


def replace_nodes(
    conn: sa.Connection, run_id: str, updates: Sequence[run_pb2.NodeExecution]
) -> None:
    """Replace the stored records of the named nodes of a run, whole.

    Raises:
        InvalidArgumentError: A record names a node the run does not have.
    """
    wanted = {node.node_id for node in updates}
    known = set(
        conn.execute(
            sa.select(node_executions.c.node_id).where(
                node_executions.c.run_id == run_id, node_executions.c.node_id.in_(wanted)
            )
        ).scalars()
    )
    for index, node in enumerate(updates):
        if node.node_id not in known:
            raise InvalidArgumentError.for_field(
                f"node_updates[{index}].node_id",
                f"run 'runs/{run_id}' has no node '{node.node_id}'",
            )
    conn.execute(
        node_executions.update()
        .where(
            node_executions.c.run_id == sa.bindparam("b_run_id"),
            node_executions.c.node_id == sa.bindparam("b_node_id"),
        )
        .values(state=sa.bindparam("b_state"), data=sa.bindparam("b_data")),
        [
            {
                "b_run_id": run_id,
                "b_node_id": node.node_id,
                "b_state": node.state,
                "b_data": node.SerializeToString(),
            }
            for node in updates
        ],
    )
