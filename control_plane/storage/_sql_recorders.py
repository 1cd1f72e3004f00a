"""Which control-plane replica records which run: one lease per active run, in its row.

A replica records the engine's events of the runs it holds a live lease on, and only those:
every such write is fenced by the lease (``RunQueries.record(..., lease=...)``), so two
replicas never record one run, even while a lapsed holder still believes it holds it. A
replica renews all its leases in one statement, claims runs whose lease has lapsed (their
recorder died), and gives its leases up when it stops (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from control_plane.storage._notify import RunListener
from control_plane.storage._sql_base import SqlBase
from control_plane.storage._tables import ACTIVE_RUN_STATES, runs
from control_plane.storage.repository import RecorderLease


def _lease_free(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(runs.c.recorder.is_(None), runs.c.recorder_until < now)


class RecorderQueries(SqlBase):
    """Recording leases and cross-replica notifications (see
    :class:`~control_plane.storage.repository.Repository`)."""

    @property
    def shared(self) -> bool:
        return self._claim is None and self.url.get_backend_name() != "sqlite"

    def claim_run(
        self, run_id: str, lease: RecorderLease, *, now: float, replacing: str = ""
    ) -> bool:
        held_by = sa.or_(_lease_free(now), runs.c.recorder == lease.holder)
        if replacing:
            held_by = sa.or_(held_by, runs.c.recorder == replacing)
        with self._write() as conn:
            claimed = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.state.in_(ACTIVE_RUN_STATES), held_by)
                .values(recorder=lease.holder, recorder_until=lease.until)
                .returning(runs.c.id)
            ).first()
        return claimed is not None

    def unclaimed_run_ids(self, now: float) -> list[str]:
        with self._read(self._single) as conn:
            return list(
                conn.execute(
                    sa.select(runs.c.id)
                    .where(runs.c.state.in_(ACTIVE_RUN_STATES), _lease_free(now))
                    .order_by(runs.c.create_time, runs.c.id)
                ).scalars()
            )

    def recorders_like(self, prefix: str) -> dict[str, str]:
        with self._read(self._single) as conn:
            return {
                run_id: recorder
                for run_id, recorder in conn.execute(
                    sa.select(runs.c.id, runs.c.recorder).where(
                        runs.c.state.in_(ACTIVE_RUN_STATES),
                        runs.c.recorder.startswith(prefix, autoescape=True),
                    )
                )
            }

    def renew_claims(self, lease: RecorderLease) -> set[str]:
        with self._write() as conn:
            return set(
                conn.execute(
                    runs.update()
                    .where(runs.c.recorder == lease.holder, runs.c.state.in_(ACTIVE_RUN_STATES))
                    .values(recorder_until=lease.until)
                    .returning(runs.c.id)
                ).scalars()
            )

    def release_claims(self, holder: str) -> int:
        with self._write() as conn:
            return len(
                conn.execute(
                    runs.update()
                    .where(runs.c.recorder == holder)
                    .values(recorder=None, recorder_until=None)
                    .returning(runs.c.id)
                ).all()
            )

    def listen_runs(self, callback: Callable[[str], None]) -> RunListener | None:
        if self.url.get_backend_name() != "postgresql":
            return None
        return RunListener(self.url, self._origin, callback)
