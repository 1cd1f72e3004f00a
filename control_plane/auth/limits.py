"""Limits per caller: how many server streams (WatchRun, WatchNodeLogs) one principal may hold
open at once, so a single caller cannot take every serving thread. Only callers that proved
who they are are counted: on a server without authentication everyone is the same anonymous
caller, and one shared cap would let one client starve the others."""

from __future__ import annotations

import threading

from control_plane.auth.credentials import Principal
from control_plane.errors import ResourceExhaustedError

#: The default cap on one principal's open streams (each holds a serving thread).
DEFAULT_STREAMS_PER_PRINCIPAL = 16


class StreamLimiter:
    """Counts each principal's open streams; a stream beyond ``limit`` is refused with
    RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS). 0 means no limit."""

    def __init__(self, limit: int = DEFAULT_STREAMS_PER_PRINCIPAL) -> None:
        if limit < 0:
            raise ValueError(f"the stream limit must be >= 0, not {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def acquire(self, principal: Principal, method: str) -> None:
        r"""Count a stream of ``principal`` in, or raise ResourceExhaustedError; each stream
        that was counted in must be :meth:`release`\ d."""
        if principal.via == "none":
            return
        with self._lock:
            held = self._open.get(principal.name, 0)
            if self.limit and held >= self.limit:
                raise ResourceExhaustedError(
                    f"{principal.name} has {held} streams open, the most this server allows one caller; "
                    f"close one before opening another {method.rsplit('/', 1)[-1]}",
                    reason="TOO_MANY_STREAMS",
                    metadata={"limit": str(self.limit)},
                )
            self._open[principal.name] = held + 1

    def release(self, principal: Principal) -> None:
        if principal.via == "none":
            return
        with self._lock:
            left = self._open[principal.name] - 1
            if left:
                self._open[principal.name] = left
            else:
                del self._open[principal.name]
