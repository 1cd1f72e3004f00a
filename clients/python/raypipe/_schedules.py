"""ScheduleService in the SDK: the methods of both clients for schedules, and their requests.

Kept apart from ``_client``/``_aio`` (one module per service, as the server does); the
clients inherit :class:`ScheduleMethods` and :class:`AsyncScheduleMethods`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from google.protobuf import field_mask_pb2, json_format, timestamp_pb2

from raypipe import _rpc as rpc
from raypipe._builder import DurationLike, duration, enum_value
from raypipe._names import (
    PipelineRef,
    ScheduleRef,
    VersionRef,
    pipeline_name,
    schedule_name,
    version_name,
)
from raypipe.v1 import run_pb2, schedule_pb2, schedule_service_pb2

if TYPE_CHECKING:
    from raypipe._paging import AsyncPageIterator, PageIterator

TimeLike = dt.datetime | str | timestamp_pb2.Timestamp
"""An instant: a timezone-aware datetime, an RFC 3339 string or a Timestamp message."""

ScheduleRetryLike = int | Mapping[str, Any] | schedule_pb2.ScheduleRetryPolicy
"""Retries of failed scheduled runs: how many, the policy's JSON mapping, or the message."""

_UNSET: Any = object()  # "not given": update_schedule changes only the fields given


def timestamp(value: TimeLike) -> timestamp_pb2.Timestamp:
    """A Timestamp from an aware datetime, an RFC 3339 string or a Timestamp.

    Raises:
        ValueError: A naive datetime (its zone would be a guess) or a malformed string.
    """
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value!r} has no time zone; give an aware datetime")
        ts.FromDatetime(value.astimezone(dt.UTC))
        return ts
    try:
        ts.FromJsonString(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{value!r} is not an RFC 3339 time such as 2025-01-31T08:00:00Z") from e
    return ts


def _retry(value: ScheduleRetryLike) -> schedule_pb2.ScheduleRetryPolicy:
    if isinstance(value, schedule_pb2.ScheduleRetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return schedule_pb2.ScheduleRetryPolicy(max_retries=value)
    if not isinstance(value, Mapping):
        raise TypeError("retry is a number of retries, a dict or a ScheduleRetryPolicy")
    data = dict(value)
    for key in ("initial_backoff", "initialBackoff", "max_backoff", "maxBackoff"):
        if key in data and not isinstance(data[key], str):
            data[key] = json_format.MessageToJson(duration(data[key])).strip('"')
    return json_format.ParseDict(data, schedule_pb2.ScheduleRetryPolicy())


def schedule_message(
    *,
    pipeline: Any = _UNSET,
    version: Any = _UNSET,
    cron: Any = _UNSET,
    every: Any = _UNSET,
    at: Any = _UNSET,
    parameters: Any = _UNSET,
    time_zone: Any = _UNSET,
    start_time: Any = _UNSET,
    end_time: Any = _UNSET,
    max_runs: Any = _UNSET,
    overlap_policy: Any = _UNSET,
    catchup_policy: Any = _UNSET,
    catchup_window: Any = _UNSET,
    jitter: Any = _UNSET,
    retry: Any = _UNSET,
    display_name: Any = _UNSET,
) -> tuple[schedule_pb2.Schedule, list[str]]:
    """A Schedule holding the given fields, and the field mask paths of those fields.

    Each option is one of :meth:`ScheduleMethods.create_schedule`'s; ``_UNSET`` leaves a field
    out of both, None puts it in the mask unset (so an update clears it).
    """
    s = schedule_pb2.Schedule()
    paths: list[str] = []

    def given(path: str, value: Any) -> bool:
        if value is _UNSET:
            return False
        paths.append(path)
        return value is not None

    triggers = [v for v in (cron, every, at) if v is not _UNSET and v is not None]
    if len(triggers) > 1:
        raise ValueError("give one trigger: cron, every or at")
    # A version pins the schedule; the pipeline then only qualifies a bare version number.
    if (version is _UNSET or version is None) and given("pipeline", pipeline):
        s.pipeline = pipeline_name(pipeline)
    base = pipeline if pipeline is not _UNSET else None
    if given("pipeline_version", version):
        s.pipeline_version = version_name(base, version)
    if given("cron", cron):
        s.cron.expression = cron
    if given("interval", every):
        s.interval.every.CopyFrom(duration(every))
    if given("once", at):
        s.once.at.CopyFrom(timestamp(at))
    if given("parameters", parameters):
        for key, value in parameters.items():
            s.parameters[key].CopyFrom(rpc.to_value(value, f"parameters[{key!r}]"))
    if given("time_zone", time_zone):
        s.time_zone = time_zone
    if given("start_time", start_time):
        s.start_time.CopyFrom(timestamp(start_time))
    if given("end_time", end_time):
        s.end_time.CopyFrom(timestamp(end_time))
    if given("max_runs", max_runs):
        s.max_runs = max_runs
    if given("overlap_policy", overlap_policy):
        s.overlap_policy = enum_value(
            schedule_pb2.OverlapPolicy, "OVERLAP_POLICY_", overlap_policy, "overlap_policy"
        )
    if given("catchup_policy", catchup_policy):
        s.catchup_policy = enum_value(
            schedule_pb2.CatchupPolicy, "CATCHUP_POLICY_", catchup_policy, "catchup_policy"
        )
    if given("catchup_window", catchup_window):
        s.catchup_window.CopyFrom(duration(catchup_window))
    if given("jitter", jitter):
        s.jitter.CopyFrom(duration(jitter))
    if given("retry", retry):
        s.retry.CopyFrom(_retry(retry))
    if given("display_name", display_name):
        s.display_name = display_name
    return s, paths


def create_schedule_request(
    pipeline: PipelineRef | None,
    *,
    schedule_id: str,
    request_id: str | None,
    paused: bool = False,
    **fields: Any,
) -> schedule_service_pb2.CreateScheduleRequest:
    """The CreateSchedule request; unset options (None, empty, 0) are left out."""
    given = {k: v for k, v in fields.items() if v is not None and v != "" and v != 0}
    if pipeline is not None:
        given["pipeline"] = pipeline
    schedule, _ = schedule_message(**given)
    schedule.paused = paused
    return schedule_service_pb2.CreateScheduleRequest(
        schedule=schedule,
        schedule_id=schedule_id.removeprefix("schedules/"),
        request_id=request_id or rpc.new_request_id(),
    )


def _arguments(frame_locals: dict[str, Any]) -> dict[str, Any]:
    """A method's arguments from its ``locals()`` taken first thing, without ``self``: both
    clients' create_schedule pass theirs to :func:`create_schedule_request` unchanged."""
    return {k: v for k, v in frame_locals.items() if k != "self"}


def get_schedule_request(schedule: ScheduleRef) -> schedule_service_pb2.GetScheduleRequest:
    return schedule_service_pb2.GetScheduleRequest(name=schedule_name(schedule))


def list_schedules_request(
    pipeline: PipelineRef | None, page_size: int
) -> schedule_service_pb2.ListSchedulesRequest:
    return schedule_service_pb2.ListSchedulesRequest(
        pipeline=pipeline_name(pipeline) if pipeline is not None else "", page_size=page_size
    )


def update_schedule_request(
    schedule: ScheduleRef, etag: str, changes: Mapping[str, Any]
) -> schedule_service_pb2.UpdateScheduleRequest:
    unknown = set(changes) - set(schedule_message.__kwdefaults__ or {})
    if unknown:
        raise TypeError(f"update_schedule() got unknown fields: {', '.join(sorted(unknown))}")
    if not changes:
        raise ValueError("update_schedule() needs at least one field to change")
    message, paths = schedule_message(**changes)
    message.name = schedule_name(schedule)
    message.etag = etag
    return schedule_service_pb2.UpdateScheduleRequest(
        schedule=message, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )


def delete_schedule_request(
    schedule: ScheduleRef, etag: str
) -> schedule_service_pb2.DeleteScheduleRequest:
    return schedule_service_pb2.DeleteScheduleRequest(name=schedule_name(schedule), etag=etag)


def pause_schedule_request(
    schedule: ScheduleRef, note: str
) -> schedule_service_pb2.PauseScheduleRequest:
    return schedule_service_pb2.PauseScheduleRequest(name=schedule_name(schedule), note=note)


def resume_schedule_request(
    schedule: ScheduleRef, note: str
) -> schedule_service_pb2.ResumeScheduleRequest:
    return schedule_service_pb2.ResumeScheduleRequest(name=schedule_name(schedule), note=note)


def trigger_schedule_request(
    schedule: ScheduleRef, request_id: str | None
) -> schedule_service_pb2.TriggerScheduleRequest:
    return schedule_service_pb2.TriggerScheduleRequest(
        name=schedule_name(schedule), request_id=request_id or rpc.new_request_id()
    )


def backfill_request(
    schedule: ScheduleRef, start_time: TimeLike, end_time: TimeLike
) -> schedule_service_pb2.BackfillScheduleRequest:
    return schedule_service_pb2.BackfillScheduleRequest(
        name=schedule_name(schedule),
        start_time=timestamp(start_time),
        end_time=timestamp(end_time),
    )


class ScheduleMethods:
    """The ScheduleService methods of :class:`raypipe.Client`."""

    if TYPE_CHECKING:
        _schedules: Any

        def _unary(self, method: Callable[..., Any], request: Any) -> Any: ...
        def _pages(
            self, method: Callable[..., Any], request: Any, field: str, page_token: str
        ) -> PageIterator[Any]: ...

    def create_schedule(
        self,
        pipeline: PipelineRef | None = None,
        *,
        cron: str | None = None,
        every: DurationLike | None = None,
        at: TimeLike | None = None,
        schedule_id: str = "",
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        time_zone: str = "",
        start_time: TimeLike | None = None,
        end_time: TimeLike | None = None,
        max_runs: int = 0,
        overlap_policy: str | int | None = None,
        catchup_policy: str | int | None = None,
        catchup_window: DurationLike | None = None,
        jitter: DurationLike | None = None,
        retry: ScheduleRetryLike | None = None,
        display_name: str = "",
        paused: bool = False,
        request_id: str | None = None,
    ) -> schedule_pb2.Schedule:
        """Create a schedule that starts runs of a pipeline (CreateSchedule).

        ``create_schedule("churn", cron="0 6 * * MON-FRI", time_zone="Europe/Berlin")``,
        ``create_schedule("churn", every="15m")`` or ``create_schedule("churn", at=when)``.

        Args:
            pipeline: The pipeline; each fire runs its default version as of that fire.
            cron: A 5-field cron expression or an alias such as ``@hourly``.
            every: A fixed interval, such as ``"15m"`` or a timedelta.
            at: One instant to fire once.
            schedule_id: ``[a-z][a-z0-9-]{0,62}``; empty lets the server choose.
            version: Pin a version (a number with ``pipeline``, or a name).
            parameters: Run parameters of every run.
            time_zone: IANA zone of the cron expression; default UTC.
            start_time: No fire before this instant.
            end_time: No fire after this instant.
            max_runs: Stop after this many runs; 0 for no limit.
            overlap_policy: ``skip``, ``buffer_one``, ``buffer_all``, ``cancel_other`` or
                ``allow_all``: what a fire does while an earlier run is still going.
            catchup_policy: ``none``, ``latest`` or ``all``: fires missed while down.
            catchup_window: How far back ``all`` reaches.
            jitter: Delay each fire by a deterministic amount below this.
            retry: Retries of failed scheduled runs.
            display_name: A name for displays.
            paused: Create it paused: it fires only when resumed (TriggerSchedule still
                starts a run).
            request_id: Idempotency key; default a fresh UUID.
        """
        request = create_schedule_request(**_arguments(locals()))
        return self._unary(self._schedules.CreateSchedule, request).schedule

    def get_schedule(self, schedule: ScheduleRef) -> schedule_pb2.Schedule:
        """Get a schedule by id or name (GetSchedule)."""
        return self._unary(self._schedules.GetSchedule, get_schedule_request(schedule)).schedule

    def list_schedules(
        self, *, pipeline: PipelineRef | None = None, page_size: int = 0, page_token: str = ""
    ) -> PageIterator[schedule_pb2.Schedule]:
        """Iterate over schedules, newest first, optionally of one pipeline (ListSchedules)."""
        request = list_schedules_request(pipeline, page_size)
        return self._pages(self._schedules.ListSchedules, request, "schedules", page_token)

    def update_schedule(
        self, schedule: ScheduleRef, *, etag: str = "", **changes: Any
    ) -> schedule_pb2.Schedule:
        """Change the given fields of a schedule, and only those (UpdateSchedule).

        ``update_schedule("nightly", cron="0 3 * * *", overlap_policy="skip")``. The keyword
        arguments are those of :meth:`create_schedule` (not ``schedule_id``/``request_id``);
        passing None clears a field.

        Args:
            schedule: The schedule's id or name.
            etag: When given, the update fails with ABORTED if the schedule changed since.
            **changes: The fields to change.
        """
        request = update_schedule_request(schedule, etag, changes)
        return self._unary(self._schedules.UpdateSchedule, request).schedule

    def delete_schedule(self, schedule: ScheduleRef, *, etag: str = "") -> None:
        """Delete a schedule; the runs it started are kept (DeleteSchedule)."""
        self._unary(self._schedules.DeleteSchedule, delete_schedule_request(schedule, etag))

    def pause_schedule(self, schedule: ScheduleRef, *, note: str = "") -> schedule_pb2.Schedule:
        """Stop a schedule firing until resumed; ``note`` says why (PauseSchedule)."""
        request = pause_schedule_request(schedule, note)
        return self._unary(self._schedules.PauseSchedule, request).schedule

    def resume_schedule(self, schedule: ScheduleRef, *, note: str = "") -> schedule_pb2.Schedule:
        """Fire again from the next fire time after now (ResumeSchedule)."""
        request = resume_schedule_request(schedule, note)
        return self._unary(self._schedules.ResumeSchedule, request).schedule

    def trigger_schedule(
        self, schedule: ScheduleRef, *, request_id: str | None = None
    ) -> run_pb2.Run:
        """Start one run now, also while paused (TriggerSchedule)."""
        request = trigger_schedule_request(schedule, request_id)
        return self._unary(self._schedules.TriggerSchedule, request).run

    def backfill_schedule(
        self, schedule: ScheduleRef, *, start_time: TimeLike, end_time: TimeLike
    ) -> schedule_service_pb2.BackfillScheduleResponse:
        """Start a run for each fire time in (start_time, end_time] (BackfillSchedule).

        Returns:
            The ``runs`` started, the fire times that ``existing`` runs covered already, and
            those ``skipped`` by the overlap policy.
        """
        request = backfill_request(schedule, start_time, end_time)
        return self._unary(self._schedules.BackfillSchedule, request)


class AsyncScheduleMethods:
    """The ScheduleService methods of :class:`raypipe.AsyncClient`; see
    :class:`ScheduleMethods` for each one's documentation."""

    if TYPE_CHECKING:
        _schedules: Any

        def _unary(self, method: Callable[..., Any], request: Any) -> Awaitable[Any]: ...
        def _pages(
            self, method: Callable[..., Any], request: Any, field: str, page_token: str
        ) -> AsyncPageIterator[Any]: ...

    async def create_schedule(
        self,
        pipeline: PipelineRef | None = None,
        *,
        cron: str | None = None,
        every: DurationLike | None = None,
        at: TimeLike | None = None,
        schedule_id: str = "",
        version: VersionRef | None = None,
        parameters: Mapping[str, Any] | None = None,
        time_zone: str = "",
        start_time: TimeLike | None = None,
        end_time: TimeLike | None = None,
        max_runs: int = 0,
        overlap_policy: str | int | None = None,
        catchup_policy: str | int | None = None,
        catchup_window: DurationLike | None = None,
        jitter: DurationLike | None = None,
        retry: ScheduleRetryLike | None = None,
        display_name: str = "",
        paused: bool = False,
        request_id: str | None = None,
    ) -> schedule_pb2.Schedule:
        """See :meth:`raypipe.Client.create_schedule`."""
        request = create_schedule_request(**_arguments(locals()))
        return (await self._unary(self._schedules.CreateSchedule, request)).schedule

    async def get_schedule(self, schedule: ScheduleRef) -> schedule_pb2.Schedule:
        """See :meth:`raypipe.Client.get_schedule`."""
        request = get_schedule_request(schedule)
        return (await self._unary(self._schedules.GetSchedule, request)).schedule

    def list_schedules(
        self, *, pipeline: PipelineRef | None = None, page_size: int = 0, page_token: str = ""
    ) -> AsyncPageIterator[schedule_pb2.Schedule]:
        """See :meth:`raypipe.Client.list_schedules`; iterate with ``async for``."""
        request = list_schedules_request(pipeline, page_size)
        return self._pages(self._schedules.ListSchedules, request, "schedules", page_token)

    async def update_schedule(
        self, schedule: ScheduleRef, *, etag: str = "", **changes: Any
    ) -> schedule_pb2.Schedule:
        """See :meth:`raypipe.Client.update_schedule`."""
        request = update_schedule_request(schedule, etag, changes)
        return (await self._unary(self._schedules.UpdateSchedule, request)).schedule

    async def delete_schedule(self, schedule: ScheduleRef, *, etag: str = "") -> None:
        """See :meth:`raypipe.Client.delete_schedule`."""
        await self._unary(self._schedules.DeleteSchedule, delete_schedule_request(schedule, etag))

    async def pause_schedule(
        self, schedule: ScheduleRef, *, note: str = ""
    ) -> schedule_pb2.Schedule:
        """See :meth:`raypipe.Client.pause_schedule`."""
        request = pause_schedule_request(schedule, note)
        return (await self._unary(self._schedules.PauseSchedule, request)).schedule

    async def resume_schedule(
        self, schedule: ScheduleRef, *, note: str = ""
    ) -> schedule_pb2.Schedule:
        """See :meth:`raypipe.Client.resume_schedule`."""
        request = resume_schedule_request(schedule, note)
        return (await self._unary(self._schedules.ResumeSchedule, request)).schedule

    async def trigger_schedule(
        self, schedule: ScheduleRef, *, request_id: str | None = None
    ) -> run_pb2.Run:
        """See :meth:`raypipe.Client.trigger_schedule`."""
        request = trigger_schedule_request(schedule, request_id)
        return (await self._unary(self._schedules.TriggerSchedule, request)).run

    async def backfill_schedule(
        self, schedule: ScheduleRef, *, start_time: TimeLike, end_time: TimeLike
    ) -> schedule_service_pb2.BackfillScheduleResponse:
        """See :meth:`raypipe.Client.backfill_schedule`."""
        request = backfill_request(schedule, start_time, end_time)
        return await self._unary(self._schedules.BackfillSchedule, request)
