"""An Engine without Ray, for tests of run supervision: runs are submitted to it, and the test
decides what happens to them by emitting the events a real engine would report."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ray_nodes.engine import EngineEvent, PollResult, RunSubmission


class FakeEngine:
    """Implements :class:`ray_nodes.engine.Engine`; events are numbered per run from 1.

    Attributes:
        submitted: Run id -> its submission, for every submit (a repeat is counted once).
        submits: Every submit call's run id, in order (repeats included).
        cancelled: Run ids cancel was called for, in order.
        acked: Run id -> the highest sequence number acknowledged.
        fail_submit: Raised by the next submits while set.
    """

    def __init__(self) -> None:
        self.submitted: dict[str, RunSubmission] = {}
        self.submits: list[str] = []
        self.cancelled: list[str] = []
        self.acked: dict[str, int] = {}
        self.fail_submit: Exception | None = None
        self._events: dict[str, list[EngineEvent]] = {}
        self._cond = threading.Condition()

    def start(self) -> None:
        pass  # nothing to connect to

    def close(self) -> None:
        pass

    def submit(self, submission: RunSubmission) -> None:
        if self.fail_submit is not None:
            raise self.fail_submit
        with self._cond:
            self.submits.append(submission.run_id)
            self.submitted.setdefault(submission.run_id, submission)
            self._events.setdefault(submission.run_id, [])
            self._cond.notify_all()

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)

    def emit(
        self, run_id: str, kind: str, node_id: str = "", state: str = "", **fields: Any
    ) -> int:
        """Report one event of a submitted run; returns its sequence number."""
        with self._cond:
            events = self._events[run_id]
            seq = len(events) + 1
            events.append(
                EngineEvent(seq, time.time(), kind, node_id=node_id, state=state, **fields)
            )
            self._cond.notify_all()
            return seq

    def forget(self, run_id: str) -> None:
        """Lose a run, as a restarted cluster would."""
        with self._cond:
            self._events.pop(run_id, None)
            self._cond.notify_all()

    def poll(self, cursors: Mapping[str, int], timeout_s: float) -> PollResult:
        def news() -> PollResult | None:
            found = {
                run_id: [e for e in self._events[run_id] if e.seq > cursor]
                for run_id, cursor in cursors.items()
                if run_id in self._events
            }
            found = {run_id: events for run_id, events in found.items() if events}
            unknown = frozenset(r for r in cursors if r not in self._events)
            return PollResult(found, unknown) if found or unknown else None

        with self._cond:
            self._cond.wait_for(lambda: news() is not None, timeout_s)
            return news() or PollResult({})

    def ack(self, run_id: str, seq: int) -> None:
        self.acked[run_id] = max(seq, self.acked.get(run_id, 0))

    def known_runs(self) -> list[str]:
        with self._cond:
            return list(self._events)
