"""WatchCache against a real SQLite store with a counting wrapper: streams of one run share
each read, see every event once and in order, and still find events stored after the cache's
last read; node reads are shared per (nodes, sequence)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.runs import watch_cache
from control_plane.runs.watch_cache import WatchCache
from control_plane.storage.repository import NewRun, RunChange
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import run_pb2
from tests.schedule_fakes import add_pipeline


class Counting:
    """The repository, counting the reads WatchCache makes."""

    def __init__(self, repo: SqlRepository) -> None:
        self.repo = repo
        self.calls: Counter[str] = Counter()

    def list_events(self, run_id: str, *, after_sequence: int = 0) -> list[run_pb2.RunEvent]:
        self.calls["list_events"] += 1
        return self.repo.list_events(run_id, after_sequence=after_sequence)

    def get_run(self, run_id: str, *, node_ids: Collection[str] | None = None) -> run_pb2.Run:
        self.calls["get_run"] += 1
        return self.repo.get_run(run_id, node_ids=node_ids)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[SqlRepository, Counting]]:
    repo = open_repository(f"sqlite:///{tmp_path / 'raypipe.db'}")
    add_pipeline(repo, "p")
    repo.create_run(
        NewRun(run_id="r", pipeline_id="p", version_number=1, parameters={}, node_ids=["a"])
    )
    yield repo, Counting(repo)
    repo.close()


def store_events(repo: SqlRepository, *messages: str) -> None:
    events = [
        run_pb2.RunEvent(type=run_pb2.RunEvent.TYPE_NODE_PROGRESS, node_id="a", message=m)
        for m in messages
    ]
    repo.record("r", RunChange(events=events))


def cache_of(counting: Counting) -> WatchCache:
    return WatchCache(counting)  # type: ignore[arg-type]  # the two reads it makes


def test_streams_of_one_run_share_each_read_and_miss_nothing(
    store: tuple[SqlRepository, Counting],
) -> None:
    repo, counting = store
    cache = cache_of(counting)
    store_events(repo, "1", "2", "3")
    assert [e.sequence for e in cache.events_after("r", 0)] == [1, 2, 3]
    assert [e.sequence for e in cache.events_after("r", 0)] == [1, 2, 3]  # from memory
    assert [e.sequence for e in cache.events_after("r", 2)] == [3]
    assert counting.calls["list_events"] == 1
    # A stream that has everything kept asks storage: that is how new events are found.
    assert cache.events_after("r", 3) == []
    store_events(repo, "4", "5")
    assert [e.message for e in cache.events_after("r", 3)] == ["4", "5"]
    assert [e.sequence for e in cache.events_after("r", 1)] == [2, 3, 4, 5]
    assert counting.calls["list_events"] == 3
    # Ahead of the cache (its first read came straight from storage): read from its cursor.
    store_events(repo, "6")
    assert [e.sequence for e in cache.events_after("r", 6)] == []
    assert [e.sequence for e in cache.events_after("r", 5)] == [6]


def test_a_hundred_streams_woken_together_cost_one_read(
    store: tuple[SqlRepository, Counting],
) -> None:
    repo, counting = store
    cache = cache_of(counting)
    store_events(repo, "1")
    assert len(cache.events_after("r", 0)) == 1
    store_events(repo, "2", "3")
    got: list[list[int]] = []
    lock = threading.Lock()

    def stream() -> None:
        events = cache.events_after("r", 1)
        run = cache.nodes("r", {"a"}, 3)
        with lock:
            got.append([e.sequence for e in events] + [len(run.nodes)])

    threads = [threading.Thread(target=stream) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [[2, 3, 1]] * 100
    assert counting.calls["list_events"] == 2  # the first read, then one for all 100
    assert counting.calls["get_run"] == 1
    cache.nodes("r", {"a"}, 4)  # a later sequence: read again
    assert counting.calls["get_run"] == 2


def test_old_events_and_runs_are_let_go(
    store: tuple[SqlRepository, Counting], monkeypatch: Any
) -> None:
    repo, counting = store
    monkeypatch.setattr(watch_cache, "MAX_EVENTS", 3)
    cache = cache_of(counting)
    store_events(repo, *"12345")
    assert [e.sequence for e in cache.events_after("r", 0)] == [1, 2, 3, 4, 5]
    assert [e.sequence for e in cache.events_after("r", 2)] == [3, 4, 5]  # kept: the newest
    assert counting.calls["list_events"] == 1
    # A stream behind what is kept reads for itself, and gets everything after its cursor.
    assert [e.sequence for e in cache.events_after("r", 0)] == [1, 2, 3, 4, 5]
    assert counting.calls["list_events"] == 2
    for i in range(watch_cache.MAX_RUNS + 1):  # the least recently watched run goes
        cache._entry(f"other{i}")
    assert "r" not in cache._entries
