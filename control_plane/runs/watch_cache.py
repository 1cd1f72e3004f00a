"""What the WatchRun streams of one run read, read once for all of them.

Every stream of a run is woken by the same notification and asks storage the same two things:
the events after the sequence it has, and the nodes those events touched. With a hundred
streams on one run that was a hundred identical reads per batch (docs/benchmarks.md, Scale).
Here the first stream to ask reads, under the run's lock, and the others take the answer from
memory:

* Events never change once stored and are numbered without gaps, so a run's entry keeps them
  from the first sequence any stream asked for; a stream that has seen everything kept asks
  storage for what came after, which is how new events are found at all.
* A node read is shared by the streams asking for the same nodes at the same sequence: what
  they get is at least as new as the events they have, as a read of their own would be.

Entries are kept for the :data:`MAX_RUNS` runs watched most recently, and a run's events up to
:data:`MAX_EVENTS`, beyond which the oldest go (a stream that needs those reads them itself).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

from control_plane.storage.repository import Repository
from raypipe.v1 import run_pb2

__all__ = ["MAX_EVENTS", "MAX_RUNS", "WatchCache"]

#: Runs whose reads are kept (the most recently watched).
MAX_RUNS = 256
#: Events kept per run.
MAX_EVENTS = 20_000


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Stored events with sequences ``first .. first + len(events) - 1``.
    first: int = 0
    events: list[run_pb2.RunEvent] = field(default_factory=list)
    #: The last node read: (nodes asked for, the sequence they were asked at) and the answer.
    node_key: tuple[frozenset[str], int] | None = None
    node_run: run_pb2.Run | None = None

    @property
    def last(self) -> int:
        return self.first + len(self.events) - 1 if self.events else 0


class WatchCache:
    """The reads of WatchRun streams, shared per run (see the module's docstring)."""

    def __init__(self, repository: Repository) -> None:
        self._repo = repository
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, run_id: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is None:
                entry = self._entries[run_id] = _Entry()
                while len(self._entries) > MAX_RUNS:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(run_id)
            return entry

    def events_after(self, run_id: str, after: int) -> list[run_pb2.RunEvent]:
        """The run's stored events with a sequence above ``after``, in order."""
        entry = self._entry(run_id)
        with entry.lock:
            if entry.events and entry.first <= after + 1 and entry.last > after:
                return entry.events[after + 1 - entry.first :]  # another stream read them
            if entry.events and after == entry.last:
                # This stream has all that is kept: only storage knows of newer ones.
                new = self._repo.list_events(run_id, after_sequence=after)
                entry.events.extend(new)
            else:  # nothing kept helps this stream: read from its cursor, keep from there
                new = self._repo.list_events(run_id, after_sequence=after)
                if new:
                    entry.first, entry.events = new[0].sequence, list(new)
            if len(entry.events) > MAX_EVENTS:
                drop = len(entry.events) - MAX_EVENTS
                del entry.events[:drop]
                entry.first += drop
            return new

    def nodes(self, run_id: str, node_ids: Collection[str], at: int) -> run_pb2.Run:
        """The run with only ``node_ids``, read at or after the stream's sequence ``at``."""
        key = (frozenset(node_ids), at)
        entry = self._entry(run_id)
        with entry.lock:
            if entry.node_key != key or entry.node_run is None:
                entry.node_run = self._repo.get_run(run_id, node_ids=node_ids)
                entry.node_key = key
            return entry.node_run
