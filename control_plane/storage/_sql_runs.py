"""Runs, their nodes and their events in SQL: the RunService's and the supervisor's queries."""

from __future__ import annotations

from collections.abc import Collection
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from control_plane.errors import (
    AlreadyExistsError,
)
from control_plane.storage._convert import (
    new_run_rows,
    run_from_row,
    to_micros,
)
from control_plane.storage._notify import notify_run
from control_plane.storage._paging import decode_token, page_limit, query_digest
from control_plane.storage._queries import (
    before,
    build_page,
    node_blobs,
    replace_nodes,
    run_not_found,
    schedule_name,
    term_clauses,
    terms_key,
    version_not_found,
)
from control_plane.storage._sql_base import SqlBase, _now
from control_plane.storage._tables import (
    ACTIVE_RUN_STATES,
    node_executions,
    pipeline_versions,
    pipelines,
    run_events,
    runs,
)
from control_plane.storage.repository import (
    LeaseLostError,
    NewRun,
    Page,
    RecorderLease,
    RunChange,
    RunFilter,
)
from raypipe.v1 import run_pb2

#: Node states whose output a later run may reuse through the cross-run cache.
CACHE_SOURCE_STATES = (
    run_pb2.NodeExecution.STATE_SUCCEEDED,
    run_pb2.NodeExecution.STATE_CACHED,
)


class RunQueries(SqlBase):
    """Runs and their history (see :class:`~control_plane.storage.repository.Repository`)."""

    # --- runs ----------------------------------------------------------------------------------
    def create_run(self, new: NewRun) -> tuple[run_pb2.Run, bool]:
        """Store a new PENDING run with a PENDING record per node, in the given order.

        Returns ``(run, True)``, or ``(existing, False)`` when a run with the same non-empty
        ``request_id`` exists (also when it was created concurrently a moment ago). Raises
        AlreadyExistsError (reason RUN_ALREADY_SCHEDULED) for a second run of the same
        (schedule, scheduled_time), and NotFoundError when the version does not exist.
        """
        if new.request_id:
            existing = self._run_by_request_id(new.request_id)
            if existing is not None:
                return existing, False
        schedule = schedule_name(new.schedule)
        row, nodes = new_run_rows(new, schedule, _now())
        try:
            with self._write() as conn:
                # A key-share lock on the pipeline's row: DeletePipeline's FOR UPDATE waits
                # for this transaction, then counts this run among the active ones; if the
                # delete came first, the row is gone and this run is refused. (Creating
                # versions takes a weaker row lock that does not conflict with this one.)
                version = conn.execute(
                    sa.select(pipeline_versions.c.version_number)
                    .join(pipelines, pipelines.c.id == pipeline_versions.c.pipeline_id)
                    .where(
                        pipeline_versions.c.pipeline_id == new.pipeline_id,
                        pipeline_versions.c.version_number == new.version_number,
                    )
                    .with_for_update(read=True, key_share=True, of=pipelines)
                ).first()
                if version is None:
                    raise version_not_found(new.pipeline_id, new.version_number)
                conn.execute(runs.insert().values(row))
                if nodes:
                    conn.execute(node_executions.insert(), nodes)
        except sa.exc.IntegrityError as exc:
            self._raise_run_conflict(new, schedule, exc)
            existing = self._run_by_request_id(new.request_id)
            if existing is None:
                raise
            return existing, False
        return run_from_row(SimpleNamespace(**row), (n["data"] for n in nodes)), True

    def _raise_run_conflict(
        self, new: NewRun, schedule: str | None, exc: sa.exc.IntegrityError
    ) -> None:
        """After an insert failed on a unique index, raise the API error for it, or return
        when the cause is a run with the same request_id (created concurrently)."""
        if new.request_id and self._exists(runs, runs.c.request_id == new.request_id):
            return
        if schedule and self._exists(
            runs, runs.c.schedule == schedule, runs.c.scheduled_time == new.scheduled_time
        ):
            when = new.scheduled_time.isoformat() if new.scheduled_time else ""
            raise AlreadyExistsError(
                f"schedule '{schedule}' already started a run for {when}",
                reason="RUN_ALREADY_SCHEDULED",
                metadata={"schedule": schedule, "scheduled_time": when},
            ) from exc
        if self._exists(runs, runs.c.id == new.run_id):
            raise AlreadyExistsError(
                f"run 'runs/{new.run_id}' already exists", reason="RUN_ALREADY_EXISTS"
            ) from exc
        raise exc

    def get_run(self, run_id: str, *, node_ids: Collection[str] | None = None) -> run_pb2.Run:
        """The run with its nodes in spec order (only those in ``node_ids`` when given);
        NotFoundError if there is none."""
        with self._read(self._snapshot) as conn:
            return self._load_run(conn, run_id, node_ids)

    def list_runs(
        self, *, page_size: int, page_token: str, filter: RunFilter, omit_nodes: bool = False
    ) -> Page[run_pb2.Run]:
        """Runs newest first, with their nodes unless ``omit_nodes``, restricted by ``filter``."""
        limit = page_limit(page_size)
        schedule = schedule_name(filter.schedule)
        digest = query_digest(
            "runs",
            filter.pipeline_id,
            filter.version_number,
            sorted(set(filter.states)),
            schedule,
            terms_key(filter.terms),
        )
        after = decode_token(page_token, digest, (int, str))
        query = sa.select(runs).where(*term_clauses(runs, filter.terms))
        if filter.pipeline_id:
            query = query.where(runs.c.pipeline_id == filter.pipeline_id)
        if filter.version_number:
            query = query.where(runs.c.version_number == filter.version_number)
        if filter.states:
            query = query.where(runs.c.state.in_(sorted(set(filter.states))))
        if schedule:
            query = query.where(runs.c.schedule == schedule)
        if after is not None:
            query = query.where(before(runs, after))
        query = query.order_by(runs.c.create_time.desc(), runs.c.id.desc()).limit(limit + 1)
        with self._read(self._snapshot) as conn:
            rows = conn.execute(query).all()
            nodes = {} if omit_nodes else node_blobs(conn, [r.id for r in rows[:limit]])
        return build_page(
            rows,
            limit,
            lambda r: run_from_row(r, nodes.get(r.id, ())),
            lambda r: [to_micros(r.create_time), r.id],
            digest,
        )

    def record(
        self,
        run_id: str,
        change: RunChange,
        *,
        node_ids: Collection[str] | None = None,
        lease: RecorderLease | None = None,
    ) -> tuple[run_pb2.Run, list[run_pb2.RunEvent]]:
        """Apply ``change`` to the run in one transaction; returns the run (with only the nodes
        in ``node_ids`` when given) and the stored events.

        With ``lease``, the change is fenced: it is written only while ``lease.holder`` is the
        run's recorder (and renews its lease), in the same statement that locks the run's
        row, so a replica that lost the run to another writes nothing (LeaseLostError). On
        PostgreSQL, stored events notify the other replicas' watchers at commit
        (:mod:`._notify`)."""
        now = _now()
        values: dict[str, Any] = {"update_time": now}
        if change.state is not None:
            values["state"] = change.state
        if change.start_time is not None:
            values["start_time"] = change.start_time
        if change.end_time is not None:
            values["end_time"] = change.end_time
        if change.error is not None:
            # An empty ExecutionError clears the error.
            values["error"] = change.error.SerializeToString() or None
        if change.labels is not None:
            values["labels"] = dict(change.labels)
        if change.tracking is not None:
            values["tracking"] = change.tracking.SerializeToString() or None
        if change.engine_cursor is not None:
            values["engine_cursor"] = change.engine_cursor
        if change.events:
            values["next_event_sequence"] = runs.c.next_event_sequence + len(change.events)
        update = runs.update().where(runs.c.id == run_id)
        if lease is not None:
            update = update.where(runs.c.recorder == lease.holder)
            values["recorder_until"] = lease.until
        if change.state is not None and change.state not in ACTIVE_RUN_STATES:
            values["recorder"] = values["recorder_until"] = None  # nobody records it now
        with self._write() as conn:
            # The UPDATE locks the run's row, so concurrent records of one run take turns
            # and their events get consecutive sequence numbers.
            next_sequence = conn.execute(
                update.values(values).returning(runs.c.next_event_sequence)
            ).scalar()
            if next_sequence is None:
                if lease is not None and self._exists(runs, runs.c.id == run_id):
                    raise LeaseLostError(f"run {run_id!r} is not recorded by {lease.holder}")
                raise run_not_found(run_id)
            if change.node_updates:
                replace_nodes(conn, run_id, change.node_updates)
            events = []
            first = next_sequence - len(change.events)
            for offset, event_ in enumerate(change.events):
                stored = run_pb2.RunEvent()
                stored.CopyFrom(event_)
                stored.sequence = first + offset
                if not stored.HasField("time"):
                    stored.time.FromDatetime(now)
                events.append(stored)
            if events:
                conn.execute(
                    run_events.insert(),
                    [
                        {"run_id": run_id, "sequence": e.sequence, "data": e.SerializeToString()}
                        for e in events
                    ],
                )
                if conn.dialect.name == "postgresql":
                    notify_run(conn, run_id, self._origin)  # the other replicas' watchers
            return self._load_run(conn, run_id, node_ids), events

    def list_events(self, run_id: str, *, after_sequence: int = 0) -> list[run_pb2.RunEvent]:
        """The run's events with a sequence above ``after_sequence``, in order."""
        with self._read(self._snapshot) as conn:
            blobs = (
                conn.execute(
                    sa.select(run_events.c.data)
                    .where(run_events.c.run_id == run_id, run_events.c.sequence > after_sequence)
                    .order_by(run_events.c.sequence)
                )
                .scalars()
                .all()
            )
            if (
                not blobs
                and not conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first()
            ):
                raise run_not_found(run_id)
        return [run_pb2.RunEvent.FromString(blob) for blob in blobs]

    def engine_cursor(self, run_id: str) -> int:
        """The last engine event folded into the run's record (0 before the first)."""
        with self._read(self._single) as conn:
            cursor = conn.execute(
                sa.select(runs.c.engine_cursor).where(runs.c.id == run_id)
            ).scalar()
        if cursor is None:
            raise run_not_found(run_id)
        return int(cursor)

    def count_runs_by_state(self) -> dict[int, int]:
        """How many runs are stored in each state (one GROUP BY over the state index)."""
        with self._read(self._single) as conn:
            rows = conn.execute(sa.select(runs.c.state, sa.func.count()).group_by(runs.c.state))
            return {int(state): int(count) for state, count in rows}

    def active_run_ids(self) -> list[str]:
        """Ids of the runs that are pending, running or cancelling, oldest first."""
        with self._read(self._single) as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.id)
                    .where(runs.c.state.in_(ACTIVE_RUN_STATES))
                    .order_by(runs.c.create_time, runs.c.id)
                ).scalars()
            )

    def find_cached_nodes(
        self, cache_keys: Collection[str], *, exclude_run_id: str = ""
    ) -> dict[str, tuple[str, run_pb2.NodeExecution]]:
        keys = sorted(set(cache_keys))
        if not keys:
            return {}
        query = (
            sa.select(node_executions.c.cache_key, node_executions.c.run_id, node_executions.c.data)
            .join(runs, runs.c.id == node_executions.c.run_id)
            .where(
                node_executions.c.cache_key.in_(keys),
                node_executions.c.state.in_(CACHE_SOURCE_STATES),
                node_executions.c.run_id != exclude_run_id,
            )
            .order_by(runs.c.create_time.desc(), runs.c.id.desc())
        )
        found: dict[str, tuple[str, run_pb2.NodeExecution]] = {}
        with self._read(self._single) as conn:
            for key, run_id, data in conn.execute(query):
                if key not in found:
                    found[key] = (run_id, run_pb2.NodeExecution.FromString(data))
        return found

    def _run_by_request_id(self, request_id: str) -> run_pb2.Run | None:
        with self._read(self._snapshot) as conn:
            run_id = conn.execute(
                sa.select(runs.c.id).where(runs.c.request_id == request_id)
            ).scalar()
            return None if run_id is None else self._load_run(conn, run_id)

    def _load_run(
        self, conn: sa.Connection, run_id: str, node_ids: Collection[str] | None = None
    ) -> run_pb2.Run:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise run_not_found(run_id)
        return run_from_row(row, node_blobs(conn, [run_id], node_ids).get(run_id, ()))
