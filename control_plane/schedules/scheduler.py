"""The firing loop: starts the runs schedules call for, exactly once per fire.

The fire-time logic is pure (:mod:`control_plane.schedules.timing`), and so is what the loop
decides for a schedule (:mod:`control_plane.schedules.policy`); this module is the loop around
them. The loop never imports Ray: it starts runs through
a :class:`RunStarter`, which the server implements over the RunSupervisor
(:class:`SupervisorStarter`) and tests implement with a fake.

Exactly once, across crashes and replicas:

1. Deciding: the loop locks due schedule rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
   the single write lock on SQLite), decides their due fires, records each fire in
   ``schedule_fires`` and moves the schedule's cursor past them, all in one transaction. A
   crash before the commit leaves nothing behind: the fires are still due and are decided
   again. Two replicas cannot both decide a fire: one holds the row, the other skips it and
   finds it no longer due; the fire's primary key is the backstop.
2. Starting: after the commit each ``pending`` fire is started with a run request id
   derived from (schedule, scheduled_time, attempt), then recorded ``started``. A crash in
   between leaves the fire ``pending``: the next start of the loop (or another replica,
   once the fire's lease runs out) starts it again, and the request id returns the run
   that exists instead of creating a second one. The database backstops that too: runs
   are unique per (schedule, scheduled_time, attempt).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from control_plane.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from control_plane.runs.requests import RunRequest
from control_plane.schedules.policy import parameters_of, plan_due, retry_delay
from control_plane.schedules.timing import Clock, SystemClock
from control_plane.storage import to_micros
from control_plane.storage.repository import Repository
from control_plane.storage.schedules import (
    ATTEMPT_LABEL,
    Fire,
    FireJob,
    ScheduleRepository,
    ScheduleRow,
    ScheduleTx,
    Wakeup,
)
from raypipe.v1 import run_pb2

if TYPE_CHECKING:
    from control_plane.metrics import Metrics

log = logging.getLogger("raypipe.scheduler")

__all__ = ["RunStarter", "Scheduler", "StartRequest", "SupervisorStarter", "run_request_id"]

_ACTIVE_RUN_STATES = (
    run_pb2.Run.STATE_PENDING,
    run_pb2.Run.STATE_RUNNING,
    run_pb2.Run.STATE_CANCELLING,
)
# Pruning of finished fire records: rows per transaction, and transactions per prune (so
# one prune deletes at most 50,000 rows: 10,000 schedules firing every minute for 5 minutes).
_PRUNE_BATCH = 2000
_PRUNE_BATCHES = 25


# --- starting runs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartRequest:
    """One run a schedule starts.

    Attributes:
        schedule_id: The schedule's id; the run carries ``schedules/{id}``.
        scheduled_time: The nominal fire time the run carries.
        attempt: 1 for the first run of a fire, 2, 3, ... for its retries.
        pipeline_id: The pipeline.
        version_number: The version to run (resolved when the fire was decided).
        parameters: Run parameters, as JSON values.
        request_id: Idempotency key of the run: a second start returns the first run.
    """

    schedule_id: str
    scheduled_time: datetime
    attempt: int
    pipeline_id: str
    version_number: int
    parameters: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""

    @property
    def schedule(self) -> str:
        return f"schedules/{self.schedule_id}"

    @property
    def labels(self) -> dict[str, str]:
        return {ATTEMPT_LABEL: str(self.attempt)}

    @property
    def display_name(self) -> str:
        when = self.scheduled_time.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
        suffix = f"-attempt{self.attempt}" if self.attempt > 1 else ""
        return f"{self.schedule_id}-{when}{suffix}"


class RunStarter(Protocol):
    """How the scheduler starts and cancels runs (the RunSupervisor, or a test's fake)."""

    def start(self, request: StartRequest) -> run_pb2.Run:
        """Store and start the run; a request_id seen before returns that run.

        Raises:
            NotFoundError: The version no longer exists.
            AlreadyExistsError: A run for this (schedule, scheduled_time, attempt) exists.
        """
        ...

    def cancel(self, run_id: str) -> None:
        """Ask a run to stop (a no-op for a run that has ended)."""
        ...


class _Supervisor(Protocol):
    def start_run(self, request: RunRequest) -> run_pb2.Run: ...

    def request_cancel(self, run: run_pb2.Run) -> run_pb2.Run: ...


class SupervisorStarter:
    """Starts scheduled runs through the RunSupervisor, the one way runs start."""

    def __init__(self, repository: Repository, supervisor: _Supervisor) -> None:
        self._repo = repository
        self._supervisor = supervisor

    def start(self, request: StartRequest) -> run_pb2.Run:
        # A version that lacks the schedule's parameters (the default moved to one without
        # them) is refused, not raised: the run is stored FAILED with why, where the user
        # looks for runs, and its watchers and MLflow hear of it like of every run's end.
        return self._supervisor.start_run(
            RunRequest(
                pipeline_id=request.pipeline_id,
                version_number=request.version_number,
                parameters=request.parameters,
                display_name=request.display_name,
                labels=request.labels,
                request_id=request.request_id,
                schedule=request.schedule,
                scheduled_time=request.scheduled_time,
                refuse_undeclared=True,
            )
        )

    def cancel(self, run_id: str) -> None:
        run = self._repo.get_run(run_id)
        if run.state in _ACTIVE_RUN_STATES:
            self._supervisor.request_cancel(run)


def run_request_id(schedule_id: str, scheduled_time: datetime, attempt: int) -> str:
    """The run request id of one attempt of one fire: the same on every replica and restart."""
    return f"schedule:{schedule_id}:{to_micros(scheduled_time)}:{attempt}"


# --- the loop -----------------------------------------------------------------------------------
class Scheduler:
    """The firing loop, in one thread; safe to run in several replicas on one PostgreSQL.

    Args:
        schedules: Where schedules and fires are stored.
        starter: How runs start and are cancelled.
        clock: Real time by default; tests pass a FakeClock.
        batch_size: Schedules decided per transaction.
        watch_interval: How often runs are looked at while a fire waits for one to end
            (buffered fires, retries); nothing is polled when no fire waits.
        resync_interval: The longest sleep, so a replica notices schedules that other
            replicas created; a change made through this process wakes the loop at once.
        lease: How long a decided fire belongs to the process that decided it before
            another replica may start it.
        fire_retention: How long a finished fire's record is kept (then pruned, see
            :meth:`ScheduleRepository.prune_fires`; its run stays).
        prune_interval: How often a pass prunes fire records (passes happen anyway:
            pruning adds no wake-up).
    """

    def __init__(
        self,
        schedules: ScheduleRepository,
        starter: RunStarter,
        clock: Clock | None = None,
        *,
        batch_size: int = 200,
        watch_interval: timedelta = timedelta(seconds=2),
        resync_interval: timedelta = timedelta(seconds=30),
        lease: timedelta = timedelta(seconds=60),
        fire_retention: timedelta = timedelta(days=1),
        prune_interval: timedelta = timedelta(minutes=5),
    ) -> None:
        #: Where fire lateness is reported (control_plane.metrics); None reports nothing.
        self.metrics: Metrics | None = None
        self.schedules = schedules
        self.starter = starter
        self.clock: Clock = clock or SystemClock()
        self.batch_size = batch_size
        self.watch_interval = watch_interval
        self.resync_interval = resync_interval
        self.lease = lease
        self.fire_retention = fire_retention
        self.prune_interval = prune_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # What the last pass saw waiting besides due schedules (None: look at everything).
        self._waiting: Wakeup | None = None
        self._next_watch = datetime.min.replace(tzinfo=UTC)
        self._next_prune = datetime.min.replace(tzinfo=UTC)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop thread; it first starts the fires a previous process left pending."""
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for its current pass to finish."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look again now: a schedule changed."""
        self._wake.set()

    def _loop(self) -> None:
        repair_all = True  # the fires a dead process left pending, whatever their lease
        while not self._stopping.is_set():
            self._wake.clear()  # before the pass: a change during it makes the sleep short
            try:
                deadline = self.run_once(repair_all=repair_all)
                repair_all = False
            except Exception:
                log.exception("scheduler pass failed; trying again shortly")
                deadline = self.clock.now() + timedelta(seconds=5)
            if self._stopping.is_set():
                break
            self.clock.sleep_until(deadline, self._wake)

    # --- one pass ------------------------------------------------------------------------------
    def run_once(self, *, repair_all: bool = False) -> datetime:
        """Do everything that is due now; returns when to look again.

        Args:
            repair_all: Start every pending fire, whatever its lease (at start-up: a
                previous process of this replica died with them).
        """
        now = self.clock.now()
        lease_until = now + self.lease
        progress = False
        while not self._stopping.is_set():
            with self.schedules.transaction() as tx:
                rows = tx.lock_due(now, self.batch_size)
                jobs = self.decide(tx, rows, now)
            self.start_jobs(jobs)
            progress = progress or bool(rows)
            if len(rows) < self.batch_size:
                break
        # The rest only when the last pass saw it coming, so that a pass for one due
        # schedule costs one write transaction, not five.
        seen = self._waiting
        if seen is None or (seen.next_retry is not None and seen.next_retry <= now):
            self.start_jobs(self.schedules.claim_retries(now, lease_until, limit=1000))
        if seen is None or (seen.watching and now >= self._next_watch):
            self._next_watch = now + self.watch_interval
            self._settle_watches(now)
            self.start_jobs(self._promote_buffered(now, lease_until))
        if repair_all or seen is None or (seen.next_lease is not None and seen.next_lease <= now):
            self.start_jobs(
                self.schedules.claim_pending(now, lease_until, ignore_lease=repair_all, limit=1000)
            )
        if now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            self.prune(now)
        return self._next_deadline(now, progress)

    def prune(self, now: datetime) -> int:
        """Delete finished fire records older than ``fire_retention``, in batches of
        ``_PRUNE_BATCH`` (short transactions), at most ``_PRUNE_BATCHES`` of them per call;
        how many were deleted."""
        deleted = 0
        for _ in range(_PRUNE_BATCHES):
            count = self.schedules.prune_fires(now - self.fire_retention, limit=_PRUNE_BATCH)
            deleted += count
            if count < _PRUNE_BATCH or self._stopping.is_set():
                break
        if deleted:
            log.info("pruned %d finished fire records older than %s", deleted, self.fire_retention)
        return deleted

    def decide(self, tx: ScheduleTx, rows: Sequence[ScheduleRow], now: datetime) -> list[FireJob]:
        """Decide and record the due fires of locked schedules; the pending ones to start."""
        occupancy = tx.occupancy(rows)
        jobs: list[FireJob] = []
        for row in rows:
            try:
                plan = plan_due(row, occupancy[row.id], now)
            except Exception as e:  # a stored schedule the logic cannot read: stop firing it
                log.exception("schedule %s: cannot decide its fires; pausing it", row.name)
                tx.update(
                    row, user_change=False, now=now, paused=True,
                    pause_note=f"paused by the scheduler: {type(e).__name__}: {e}",
                )  # fmt: skip
                continue
            new_jobs, existing = tx.record(
                row, plan.decisions, origin="fire", now=now, lease_until=now + self.lease
            )
            started = plan.started - sum(
                d.scheduled_time in existing and d.state in ("pending", "buffered")
                for d in plan.decisions
            )
            tx.advance(row, plan.advance, row.runs_started + started)
            jobs.extend(new_jobs)
        return jobs

    def start_jobs(self, jobs: Iterable[FireJob]) -> list[run_pb2.Run | None]:
        """Start pending fires in order and record their runs in one transaction; the run
        of each (None where it did not start now)."""
        started: list[tuple[Fire, str, bool]] = []
        out: list[run_pb2.Run | None] = []
        for job in jobs:
            run = self._launch(job, started, raise_errors=False)
            out.append(run)
        self.schedules.mark_started(started, now=self.clock.now())
        return out

    def start_job(self, job: FireJob, *, raise_errors: bool = False) -> run_pb2.Run | None:
        """Start one pending fire's run and record it.

        Args:
            job: The fire.
            raise_errors: Raise what went wrong (for a caller that answers a request);
                otherwise log it and return None.
        """
        started: list[tuple[Fire, str, bool]] = []
        try:
            return self._launch(job, started, raise_errors=raise_errors)
        finally:
            self.schedules.mark_started(started, now=self.clock.now())

    def _launch(
        self, job: FireJob, started: list[tuple[Fire, str, bool]], *, raise_errors: bool
    ) -> run_pb2.Run | None:
        """Start a fire's run; appends (fire, run id, watch) to ``started`` for the caller to
        record. A fire that can never start is recorded failed; one that failed for a
        passing reason stays pending and is started again once its lease runs out."""
        fire = job.fire
        if fire.version_number is None:
            return None
        if fire.cancel_others:
            own = self.schedules.find_run_id(fire.schedule_id, fire.scheduled_time, fire.attempt)
            for run_id in self.schedules.active_run_ids(fire.schedule_id):
                if run_id != own:
                    self.starter.cancel(run_id)
        request = StartRequest(
            schedule_id=fire.schedule_id,
            scheduled_time=fire.scheduled_time,
            attempt=fire.attempt,
            pipeline_id=job.pipeline_id,
            version_number=fire.version_number,
            parameters=parameters_of(job.config),
            request_id=run_request_id(fire.schedule_id, fire.scheduled_time, fire.attempt),
        )
        watch = fire.attempt <= job.config.retry.max_retries
        try:
            run = self.starter.start(request)
        except AlreadyExistsError:
            # The run exists without our request id (not through this loop, but the
            # database says so): adopt it rather than lose track of it.
            found = self.schedules.find_run_id(fire.schedule_id, fire.scheduled_time, fire.attempt)
            if found is not None:
                started.append((fire, found, watch))
            if raise_errors:
                raise
            return None
        except (NotFoundError, InvalidArgumentError, FailedPreconditionError) as e:
            log.warning("schedule %s: a fire cannot start: %s", fire.schedule_id, e.message)
            self.schedules.mark_failed(fire, e.message, now=self.clock.now())
            if raise_errors:
                raise
            return None
        except Exception:
            if raise_errors:
                raise
            log.exception("schedule %s: starting a run failed; will retry", fire.schedule_id)
            return None
        started.append((fire, run.name.removeprefix("runs/"), watch))
        if self.metrics is not None and fire.origin == "fire" and fire.attempt == 1:
            late = (self.clock.now() - fire.scheduled_time).total_seconds()
            self.metrics.lateness.observe(max(0.0, late))
        return run

    # --- runs that ended -------------------------------------------------------------------------
    def _settle_watches(self, now: datetime) -> None:
        """Retry the watched fires whose run failed; settle the others that ended."""
        with self.schedules.transaction() as tx:
            for job, state, end_time in tx.ended_watches(limit=1000):
                fire, policy = job.fire, job.config.retry
                if state == run_pb2.Run.STATE_FAILED and fire.attempt <= policy.max_retries:
                    ended = min(end_time, now) if end_time is not None else now
                    tx.retry_later(fire, ended + retry_delay(policy, fire.attempt), now)
                    log.info(
                        "schedule %s: the run of %s failed; attempt %d follows",
                        fire.schedule_id,
                        fire.scheduled_time.isoformat(),
                        fire.attempt + 1,
                    )
                else:
                    tx.settle(fire, now)

    def _promote_buffered(self, now: datetime, lease_until: datetime) -> list[FireJob]:
        """The earliest buffered fire of each schedule that nothing occupies any more."""
        jobs: list[FireJob] = []
        with self.schedules.transaction() as tx:
            rows = tx.lock_some(tx.buffered_schedule_ids())
            occupancy = tx.occupancy(rows)
            for row in rows:
                if not occupancy[row.id].occupied:
                    job = tx.promote_buffered(row, now=now, lease_until=lease_until)
                    if job is not None:
                        jobs.append(job)
        return jobs

    def _next_deadline(self, now: datetime, progress: bool) -> datetime:
        self._waiting = wakeup = self.schedules.wakeup()
        candidates = [now + self.resync_interval]
        candidates.extend(
            t for t in (wakeup.next_due, wakeup.next_retry, wakeup.next_lease) if t is not None
        )
        if wakeup.watching:
            candidates.append(max(self._next_watch, now))
        deadline = min(candidates)
        if deadline <= now and not progress:
            # Due rows that another replica holds right now: give it a moment.
            deadline = now + timedelta(milliseconds=50)
        return deadline
