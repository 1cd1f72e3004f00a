"""Pipelines and their versions in SQL: the PipelineService's queries."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from control_plane.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    NotFoundError,
    UnavailableError,
)
from control_plane.storage._convert import (
    pipeline_from_row,
    pipeline_name,
    to_micros,
    version_from_row,
    version_name,
)
from control_plane.storage._paging import decode_token, page_limit, query_digest
from control_plane.storage._queries import (
    before,
    build_page,
    pipeline_not_found,
    term_clauses,
    terms_key,
    version_not_found,
)
from control_plane.storage._schedule_tables import schedules
from control_plane.storage._sql_base import SqlBase, _now
from control_plane.storage._tables import (
    ACTIVE_RUN_STATES,
    pipeline_versions,
    pipelines,
    runs,
)
from control_plane.storage.repository import LabelTerm, Page
from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2


class PipelineQueries(SqlBase):
    """Pipelines and versions (see :class:`~control_plane.storage.repository.Repository`)."""

    # --- pipelines -----------------------------------------------------------------------------
    def create_pipeline(
        self, pipeline_id: str, *, display_name: str, description: str, labels: dict[str, str]
    ) -> pipeline_pb2.Pipeline:
        """Store a new pipeline without versions; AlreadyExistsError if the id is taken."""
        now = _now()
        values = {
            "id": pipeline_id,
            "display_name": display_name,
            "description": description,
            "labels": dict(labels),
            "default_version_number": None,
            "latest_version_number": 0,
            "revision": 1,
            "create_time": now,
            "update_time": now,
        }
        try:
            with self._write() as conn:
                conn.execute(pipelines.insert().values(values))
        except sa.exc.IntegrityError as exc:
            if self._exists(pipelines, pipelines.c.id == pipeline_id):
                raise AlreadyExistsError(
                    f"pipeline '{pipeline_name(pipeline_id)}' already exists",
                    reason="PIPELINE_ALREADY_EXISTS",
                    metadata={"pipeline": pipeline_name(pipeline_id)},
                ) from exc
            raise
        return pipeline_from_row(SimpleNamespace(**values))

    def get_pipeline(self, pipeline_id: str) -> pipeline_pb2.Pipeline:
        """The pipeline; NotFoundError if there is none. One primary-key lookup."""
        if self._closed:
            raise UnavailableError("storage is closed")
        cache = self._cache
        if cache is not None and (cached := cache.get(pipeline_id)) is not None:
            return cached
        generation = cache.generation if cache is not None else 0
        row = self._get_pipeline({"id": pipeline_id})
        if row is None:
            raise pipeline_not_found(pipeline_id)
        pipeline = pipeline_from_row(row)
        if cache is not None:
            cache.put(pipeline_id, pipeline, generation)
        return pipeline

    def list_pipelines(
        self, *, page_size: int, page_token: str, terms: Sequence[LabelTerm]
    ) -> Page[pipeline_pb2.Pipeline]:
        """Pipelines newest first, restricted by ``terms``."""
        limit = page_limit(page_size)
        digest = query_digest("pipelines", terms_key(terms))
        after = decode_token(page_token, digest, (int, str))
        query = sa.select(pipelines).where(*term_clauses(pipelines, terms))
        if after is not None:
            query = query.where(before(pipelines, after))
        query = query.order_by(pipelines.c.create_time.desc(), pipelines.c.id.desc())
        with self._read(self._single) as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
        return build_page(
            rows, limit, pipeline_from_row, lambda r: [to_micros(r.create_time), r.id], digest
        )

    def delete_pipeline(self, pipeline_id: str, *, force: bool) -> None:
        """Delete a pipeline and its versions; its runs stay.

        Without ``force`` the pipeline must have no run that is pending, running or
        cancelling and no schedule (FailedPreconditionError otherwise).
        """
        with self._write_pipeline(pipeline_id) as conn:
            # Lock the row first: create_run takes a share lock on it, so no run can slip in
            # between the count below and the delete.
            found = conn.execute(
                sa.select(pipelines.c.id).where(pipelines.c.id == pipeline_id).with_for_update()
            ).first()
            if found is None:
                raise pipeline_not_found(pipeline_id)
            if not force:
                active = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(runs)
                    .where(runs.c.pipeline_id == pipeline_id, runs.c.state.in_(ACTIVE_RUN_STATES))
                ).scalar_one()
                used = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(schedules)
                    .where(schedules.c.pipeline_id == pipeline_id)
                ).scalar_one()
                if active or used:
                    users = [
                        f"{n} {what}{'s' if n != 1 else ''}{detail}"
                        for n, what, detail in (
                            (active, "active run", " (pending, running or cancelling)"),
                            (used, "schedule", ""),
                        )
                        if n
                    ]
                    raise FailedPreconditionError(
                        f"pipeline '{pipeline_name(pipeline_id)}' is used by {' and '.join(users)}; "
                        "wait for the runs to finish or cancel them, delete the schedules, or "
                        "delete with force",
                        reason="PIPELINE_IN_USE",
                        metadata={
                            "pipeline": pipeline_name(pipeline_id),
                            "active_runs": str(active),
                            "schedules": str(used),
                        },
                    )
            # pipeline_versions rows go with it (ON DELETE CASCADE), and so do its schedules on a
            # forced delete; runs are kept.
            conn.execute(pipelines.delete().where(pipelines.c.id == pipeline_id))

    # --- versions ------------------------------------------------------------------------------
    def create_version(
        self,
        pipeline_id: str,
        spec: pipeline_spec_pb2.PipelineSpec,
        *,
        spec_digest: str,
        description: str,
        make_default: bool,
        creator: str = "",
    ) -> pipeline_pb2.PipelineVersion:
        """Store the pipeline's next version, numbered without gaps or duplicates.

        The number comes from the pipeline row's ``latest_version_number``, incremented by an
        ``UPDATE ... RETURNING``. That statement locks the row until commit (PostgreSQL's row
        lock, the same one ``SELECT ... FOR UPDATE`` takes; on SQLite the transaction already
        holds the database's write lock), so concurrent creates, in threads or processes, each
        read the number the previous one committed. A failed insert rolls the increment back
        with it, so no number is lost; the primary key (pipeline_id, version_number) is the
        backstop.
        """
        now = _now()
        blob = spec.SerializeToString(deterministic=True)
        number = pipelines.c.latest_version_number + 1
        changes: dict[str, Any] = {
            "latest_version_number": number,
            "revision": pipelines.c.revision + 1,
            "update_time": now,
        }
        if make_default:
            changes["default_version_number"] = number
        with self._write_pipeline(pipeline_id) as conn:
            version_number = conn.execute(
                pipelines.update()
                .where(pipelines.c.id == pipeline_id)
                .values(changes)
                .returning(pipelines.c.latest_version_number)
            ).scalar()
            if version_number is None:
                raise pipeline_not_found(pipeline_id)
            conn.execute(
                pipeline_versions.insert().values(
                    pipeline_id=pipeline_id,
                    version_number=version_number,
                    spec=blob,
                    spec_digest=spec_digest,
                    description=description,
                    create_time=now,
                    creator=creator,
                )
            )
        version = pipeline_pb2.PipelineVersion(
            name=version_name(pipeline_id, version_number),
            version_number=version_number,
            spec=spec,
            spec_digest=spec_digest,
            description=description,
            creator=creator,
        )
        version.create_time.FromDatetime(now)
        return version

    def get_version(self, pipeline_id: str, version_number: int) -> pipeline_pb2.PipelineVersion:
        """One version with its spec; NotFoundError naming what is missing."""
        if self._closed:
            raise UnavailableError("storage is closed")
        row = self._get_version({"pipeline_id": pipeline_id, "version_number": version_number})
        if row is None:
            raise self._missing_version(pipeline_id, version_number)
        return version_from_row(row, with_spec=True)

    def list_versions(
        self, pipeline_id: str, *, page_size: int, page_token: str, omit_spec: bool
    ) -> Page[pipeline_pb2.PipelineVersion]:
        """Versions newest first, walking the primary key backwards from the token's number.

        With ``omit_spec`` the spec column is not even read, so pages stay small and fast
        however big the DAGs are.
        """
        limit = page_limit(page_size)
        digest = query_digest("versions", pipeline_id)
        after = decode_token(page_token, digest, (int,))
        columns = [c for c in pipeline_versions.c if not (omit_spec and c.name == "spec")]
        query = sa.select(*columns).where(pipeline_versions.c.pipeline_id == pipeline_id)
        if after is not None:
            query = query.where(pipeline_versions.c.version_number < after[0])
        query = query.order_by(pipeline_versions.c.version_number.desc()).limit(limit + 1)
        with self._read(self._single) as conn:
            rows = conn.execute(query).all()
        # Only an empty page needs the question whether the pipeline exists at all.
        if not rows and not self._exists(pipelines, pipelines.c.id == pipeline_id):
            raise pipeline_not_found(pipeline_id)
        return build_page(
            rows,
            limit,
            lambda r: version_from_row(r, with_spec=not omit_spec),
            lambda r: [r.version_number],
            digest,
        )

    def set_default_version(self, pipeline_id: str, version_number: int) -> pipeline_pb2.Pipeline:
        """Point the pipeline's default_version at an existing version (RollbackPipeline)."""
        with self._write_pipeline(pipeline_id) as conn:
            # FOR NO KEY UPDATE, like the UPDATE below: it serializes with other changes of
            # the row but lets runs of the pipeline be created meanwhile.
            current = conn.execute(
                sa.select(pipelines.c.default_version_number)
                .where(pipelines.c.id == pipeline_id)
                .with_for_update(key_share=True)
            ).first()
            if current is None:
                raise pipeline_not_found(pipeline_id)
            exists = conn.execute(
                sa.select(pipeline_versions.c.version_number).where(
                    pipeline_versions.c.pipeline_id == pipeline_id,
                    pipeline_versions.c.version_number == version_number,
                )
            ).first()
            if exists is None:
                raise version_not_found(pipeline_id, version_number)
            if current.default_version_number == version_number:
                # Already the default: nothing changes, so neither do update_time and etag.
                row = conn.execute(sa.select(pipelines).where(pipelines.c.id == pipeline_id)).one()
            else:
                row = conn.execute(
                    pipelines.update()
                    .where(pipelines.c.id == pipeline_id)
                    .values(
                        default_version_number=version_number,
                        revision=pipelines.c.revision + 1,
                        update_time=_now(),
                    )
                    .returning(*pipelines.c)
                ).one()
            return pipeline_from_row(row)

    def _missing_version(self, pipeline_id: str, version_number: int) -> NotFoundError:
        if not self._exists(pipelines, pipelines.c.id == pipeline_id):
            return pipeline_not_found(pipeline_id)
        return version_not_found(pipeline_id, version_number)
