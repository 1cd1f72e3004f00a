"""The scheduler's clock: real time in production, a fake that tests move by hand.

The firing loop asks its clock for ``now()`` and sleeps with ``sleep_until(deadline,
wake)``: until the next fire is due, or until ``wake`` is set because a schedule changed.
It never polls.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where the scheduler gets the time and how it waits."""

    def now(self) -> datetime:
        """The current time, an aware UTC datetime."""
        ...

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> bool:
        """Block until ``deadline`` (aware; None for no deadline) or until ``wake`` is set.

        Returns:
            True if ``wake`` was set (the caller clears it), False if the deadline came.
        """
        ...


class SystemClock:
    """Real time.

    Waits in slices of at most ``max_slice`` and re-reads the wall clock after each, so a
    step of the system clock (NTP, a suspended VM) delays a fire by at most one slice
    instead of the whole step; between slices the thread sleeps, using no CPU.
    """

    def __init__(self, *, max_slice: timedelta = timedelta(seconds=60)) -> None:
        if max_slice <= timedelta(0):
            raise ValueError("max_slice must be positive")
        self._max_slice = max_slice.total_seconds()

    def now(self) -> datetime:
        """The current time, an aware UTC datetime."""
        return datetime.now(UTC)

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> bool:
        """Block until ``deadline`` or until ``wake`` is set; True if woken."""
        while True:
            if deadline is None:
                timeout = self._max_slice
            else:
                left = (deadline - self.now()).total_seconds()
                if left <= 0:
                    return wake.is_set()
                timeout = min(left, self._max_slice)
            if wake.wait(timeout):
                return True


class FakeClock:
    """A clock for tests: time stands still until the test moves it.

    ``sleep_until`` blocks (in real time) until :meth:`advance` or :meth:`set` moves the
    fake time to the deadline, or until ``wake`` is set. With ``auto_advance=True`` it
    instead jumps the fake time to the deadline at once, so a single-threaded loop walks
    years of fires in milliseconds.

    Args:
        start: The initial time (aware).
        auto_advance: Whether sleeping moves time forward to the deadline.
    """

    def __init__(self, start: datetime, *, auto_advance: bool = False) -> None:
        if start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got {start!r}")
        self._now = start.astimezone(UTC)
        self._auto_advance = auto_advance
        self._cond = threading.Condition()
        self._sleepers: list[datetime | None] = []

    def now(self) -> datetime:
        """The fake current time."""
        with self._cond:
            return self._now

    def set(self, when: datetime) -> None:
        """Move the fake time to ``when``; it never goes backwards."""
        if when.utcoffset() is None:
            raise ValueError(f"when must be timezone-aware, got {when!r}")
        with self._cond:
            when = when.astimezone(UTC)
            if when < self._now:
                raise ValueError(f"time cannot go backwards: {when} < {self._now}")
            self._now = when
            self._cond.notify_all()

    def advance(self, delta: timedelta) -> datetime:
        """Move the fake time forward by ``delta``; returns the new time."""
        if delta < timedelta(0):
            raise ValueError(f"time cannot go backwards: {delta}")
        with self._cond:
            self._now += delta
            self._cond.notify_all()
            return self._now

    @property
    def sleepers(self) -> list[datetime | None]:
        """The deadlines of the threads sleeping now (None: no deadline)."""
        with self._cond:
            return list(self._sleepers)

    def wait_for_sleepers(self, count: int = 1, *, timeout: float = 5.0) -> list[datetime | None]:
        """Block (in real time) until at least ``count`` threads sleep on this clock.

        Lets a test advance time only once the loop under test is waiting.

        Returns:
            The sleepers' deadlines.

        Raises:
            TimeoutError: If that does not happen within ``timeout`` real seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sleepers) >= count, timeout):
                raise TimeoutError(f"{len(self._sleepers)} sleepers after {timeout}s")
            return list(self._sleepers)

    def sleep_until(self, deadline: datetime | None, wake: threading.Event) -> bool:
        """Block until the fake time reaches ``deadline`` or ``wake`` is set; True if woken."""
        with self._cond:
            if deadline is not None and self._auto_advance and not wake.is_set():
                self._now = max(self._now, deadline.astimezone(UTC))
            self._sleepers.append(deadline)
            self._cond.notify_all()
            try:
                while not wake.is_set():
                    if deadline is not None and self._now >= deadline:
                        return False
                    # A set `wake` does not notify this condition, so look again after a
                    # short real-time pause; `advance` and `set` notify at once.
                    self._cond.wait(0.005)
                return True
            finally:
                self._sleepers.remove(deadline)
                self._cond.notify_all()
