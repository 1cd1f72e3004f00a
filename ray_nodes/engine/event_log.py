"""The run supervisor's event log: every run's events, numbered from 1, held until the control
plane acknowledges them (after it stored them), so a control plane that restarts loses none.

:meth:`EventLog.poll` is what the control plane's loop calls (through the supervisor actor):
it waits for news, then gathers a burst of events for :data:`POLL_COALESCE_S` so that a wide
fan-out finishing becomes a few replies rather than one per event, while a run's final event
goes out at once. Progress events are capped per run while nobody acknowledges; state changes
never are. Plain asyncio: its tests need no Ray.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray_nodes.engine.types import TERMINAL_RUN_STATES, EngineEvent

__all__ = ["MAX_PROGRESS_EVENTS", "POLL_COALESCE_S", "EventLog", "RunLog"]

#: At most this many unacknowledged progress events are kept per run; older ones are
#: coalesced away (state events are always kept).
MAX_PROGRESS_EVENTS = 1000
#: How long a poll gathers events, counted from the oldest, before it replies.
POLL_COALESCE_S = 0.05


@dataclass
class RunLog:
    """One run's unacknowledged events.

    Attributes:
        events: The events after ``acked``, in order.
        seq: The number of the last event emitted.
        acked: The number of the last event the control plane stored.
        progress: Progress events among ``events``.
        ended: Whether the run's final event was emitted.
    """

    events: list[EngineEvent] = field(default_factory=list)
    seq: int = 0
    acked: int = 0
    progress: int = 0
    ended: bool = False


class EventLog:
    """The events of every run a supervisor drives; all methods run on its event loop."""

    def __init__(self) -> None:
        self._runs: dict[str, RunLog] = {}
        self._changed = asyncio.Condition()
        self._ends = asyncio.Condition()  # notified when a run's final event is emitted

    def add(self, run_id: str, log: RunLog) -> None:
        """Start keeping ``run_id``'s events in ``log``."""
        self._runs[run_id] = log

    async def emit(self, log: RunLog, **fields: Any) -> None:
        """Append one event (``EngineEvent`` fields but ``seq`` and ``time``) and wake polls."""
        log.seq += 1
        log.events.append(EngineEvent(seq=log.seq, time=time.time(), **fields))
        if fields.get("kind") == "progress":
            log.progress += 1
            if log.progress > MAX_PROGRESS_EVENTS:
                # Nobody is acknowledging (the control plane is down): drop the oldest progress
                # report, never a state change. Sequence numbers are only cursors, so the gap
                # it leaves is harmless.
                oldest = next(
                    (
                        i
                        for i, e in enumerate(log.events)
                        if e.kind == "progress" and not e.artifacts  # stored outputs stay
                    ),
                    None,
                )
                if oldest is not None:
                    del log.events[oldest]
                    log.progress -= 1
        ended = fields.get("kind") == "run" and fields.get("state") in TERMINAL_RUN_STATES
        if ended:
            log.ended = True
        async with self._changed:
            self._changed.notify_all()
        if ended:
            async with self._ends:
                self._ends.notify_all()

    async def poll(
        self, cursors: Mapping[str, int], timeout_s: float
    ) -> tuple[dict[str, list[EngineEvent]], list[str]]:
        """Events after each cursor, waiting up to ``timeout_s`` for the first, and the runs
        of ``cursors`` the log does not know. Returns early (possibly empty) when a new run
        is added, so a caller can start following it.

        Events are gathered until the oldest of them is :data:`POLL_COALESCE_S` old before
        the call returns: a burst of node events (a wide fan-out finishing, a chain of quick
        nodes) becomes a few replies, and the caller a few transactions, rather than one per
        round trip, while no event waits longer than that. A reply with a run's final event
        goes out at once.
        """
        deadline = time.monotonic() + timeout_s
        async with self._changed:
            known = len(self._runs)
            while True:
                found, unknown = self._collect(cursors)
                remaining = deadline - time.monotonic()
                if found or unknown or remaining <= 0 or len(self._runs) != known:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return {}, []
        if found and not unknown and not self._ended(found):
            oldest = min(events[0].time for events in found.values())
            found, unknown = await self._coalesce(cursors, oldest + POLL_COALESCE_S)
        return found, unknown

    def ack(self, run_id: str, seq: int) -> bool:
        """Forget the events up to ``seq``; True when the run ended and nothing of it is left
        (the log forgets the run too)."""
        log = self._runs.get(run_id)
        if log is None:
            return False
        log.acked = max(log.acked, seq)
        log.events = [e for e in log.events if e.seq > log.acked]
        log.progress = sum(1 for e in log.events if e.kind == "progress")
        if log.ended and not log.events:
            del self._runs[run_id]  # its whole history is stored
            return True
        return False

    async def _coalesce(
        self, cursors: Mapping[str, int], until: float
    ) -> tuple[dict[str, list[EngineEvent]], list[str]]:
        """Gather events until ``until`` (wall-clock time: the oldest event found, plus
        :data:`POLL_COALESCE_S`), but only until one of the runs the caller follows ends: its
        final event goes out at once. (A run of a few quick nodes ends well inside the
        window.) Only run ends wake this, not every event."""
        # Bounded by the window itself, should the wall clock step back meanwhile.
        deadline = time.monotonic() + min(POLL_COALESCE_S, max(0.0, until - time.time()))
        async with self._ends:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self._ends.wait(), remaining)
                except TimeoutError:
                    break
                found, unknown = self._collect(cursors)
                if unknown or self._ended(found):
                    return found, unknown
        return self._collect(cursors)

    @staticmethod
    def _ended(found: Mapping[str, list[EngineEvent]]) -> bool:
        """Whether a run's final event is among ``found``: that reply goes out at once."""
        return any(
            e.kind == "run" and e.state in TERMINAL_RUN_STATES for es in found.values() for e in es
        )

    def _collect(
        self, cursors: Mapping[str, int]
    ) -> tuple[dict[str, list[EngineEvent]], list[str]]:
        found: dict[str, list[EngineEvent]] = {}
        unknown = [r for r in cursors if r not in self._runs]
        for run_id, cursor in cursors.items():
            log = self._runs.get(run_id)
            if log is not None and log.events and log.events[-1].seq > cursor:
                found[run_id] = [e for e in log.events if e.seq > cursor]
        return found, unknown
