"""Collecting the results of many node tasks at once, for the run supervisor's event loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

__all__ = ["Harvester"]

log = logging.getLogger("raypipe.supervisor")

#: The result harvester's poll interval while results come in, and the most it backs off to.
HARVEST_MIN_DELAY_S = 0.001
HARVEST_MAX_DELAY_S = 0.05
#: ... plus this much per result still awaited.
HARVEST_DELAY_PER_REF_S = 5e-6


class Harvester:
    """Resolves the results of many tasks with one ``ray.wait`` over all of them, instead of an
    ``await`` of each ObjectRef: awaiting 1,000 refs one by one in an async actor costs
    0.1-0.15 s more than a driver's wait (docs/runs.md). It polls every millisecond while
    results come in, and backs off to :data:`HARVEST_MAX_DELAY_S` while none does.
    """

    def __init__(self) -> None:
        self._waiting: dict[Any, list[asyncio.Future[Any]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for results now instead of at the next poll."""
        self._wake.set()

    async def result(self, ref: Any) -> Any:
        """The value of ``ref`` (a small object: a node's info), or its task's error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(ref, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())
        self._wake.set()
        try:
            return await future
        finally:
            waiters = self._waiting.get(ref)
            if waiters is not None and future in waiters:  # cancelled while waiting
                waiters.remove(future)
                if not waiters:
                    del self._waiting[ref]

    async def _loop(self) -> None:
        delay = HARVEST_MIN_DELAY_S
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                delay = HARVEST_MIN_DELAY_S
                continue
            try:
                found = self._collect()
            except Exception:  # never let one bad poll stop every run's progress
                log.exception("harvesting task results failed")
                found = False
            # A wait over n refs costs O(n): poll a long list less often (1,000 pending:
            # every 6 ms), which delays no node, only the report of its end.
            floor = HARVEST_MIN_DELAY_S + HARVEST_DELAY_PER_REF_S * len(self._waiting)
            delay = floor if found else min(max(delay * 2, floor), HARVEST_MAX_DELAY_S)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                delay = HARVEST_MIN_DELAY_S  # new refs: look at once
            except TimeoutError:
                pass

    def _collect(self) -> bool:
        refs = list(self._waiting)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        if not ready:
            return False
        outcomes: list[tuple[Any, BaseException | None]]
        try:  # one get for all of them; a failed task's error needs them one by one
            outcomes = [(value, None) for value in ray.get(ready, timeout=0)]
        except Exception:
            outcomes = [_outcome(ref) for ref in ready]
        for ref, (value, error) in zip(ready, outcomes, strict=True):
            waiters = self._waiting.pop(ref, [])
            for future in waiters:
                if future.done():
                    continue
                if error is None:
                    future.set_result(value)
                else:
                    future.set_exception(error)
        return bool(ready)


def _outcome(ref: Any) -> tuple[Any, BaseException | None]:
    """``(value, None)``, or ``(None, error)`` if the ref's task failed."""
    try:
        return ray.get(ref, timeout=0), None
    except Exception as e:
        return None, e
