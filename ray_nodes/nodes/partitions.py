"""Fanning a node's work out over contiguous row partitions of one frame: the ranges, the
default count, and the runners (parallel Ray tasks over a frame put in the object store once,
or one after another in this process). The preprocessor and the scaler use them.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pandas as pd

__all__ = [
    "MIN_ROWS_PER_PARTITION",
    "LocalRunner",
    "PartitionRunner",
    "RayRunner",
    "default_partitions",
    "make_runner",
    "row_ranges",
    "spread_slots",
]

T = TypeVar("T")

#: Rows per partition below which the default does not fan out. On numeric data the
#: single-partition path (hashing, no pandas factorization) handles a million rows in about
#: 0.2 s, less than putting the frame in the object store and concatenating the parts costs,
#: so the default fans out only for millions of rows; ``partitions`` overrides it (worth it
#: sooner for costly work such as ``most_frequent`` on text columns).
MIN_ROWS_PER_PARTITION = 1_000_000


def row_ranges(n_rows: int, partitions: int) -> list[tuple[int, int]]:
    """``partitions`` contiguous ``[start, stop)`` row ranges of near-equal size (fewer when
    there are fewer rows than partitions; one empty range for an empty frame)."""
    parts = max(1, min(partitions, n_rows))
    bounds = [n_rows * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def default_partitions(n_rows: int, min_rows: int = MIN_ROWS_PER_PARTITION) -> int:
    """The cluster's CPUs, but no more partitions than ``n_rows // min_rows`` (at least 1)."""
    import ray

    if ray.is_initialized():
        cpus = int(ray.cluster_resources().get("CPU", 1))
    else:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_rows // max(1, min_rows)))


class PartitionRunner(Protocol):
    """Runs a function over the partitions of one frame and returns the results in order."""

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        """``[fn(frame, *call) for call in calls]``, possibly in parallel."""
        ...


class LocalRunner:
    """Runs partitions one after another in this process (one partition, or unit tests)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        return [fn(self.frame, *call) for call in calls]


@functools.cache
def _remote(fn: Callable[..., Any]) -> Any:
    import ray

    # One CPU each: a blocked parent (this node, waiting in ray.get) lends its own CPUs
    # back to Ray, so the partitions can use every core the cluster has.
    return ray.remote(num_cpus=1, max_retries=1)(fn)


def spread_slots(nodes: Sequence[dict[str, Any]]) -> list[str]:
    """Where partition ``i`` goes on a cluster of several nodes: ``slots[i % len(slots)]``,
    each live node with CPUs appearing once per CPU, interleaved (``ray.nodes()`` entries).

    Neither Ray's default nor its SPREAD strategy spreads short tasks of one function: the
    submitter reuses the workers it already leased for tasks of the same shape, so the
    partitions pile onto the first node or two. A soft node affinity per partition places
    them in proportion to the nodes' CPUs; soft, so a node that is gone sends its partitions
    elsewhere (one that is busy keeps them queued for its CPUs, as the default would on the
    submitter's node). An empty list (one node, or none with CPUs): Ray's default placement."""
    cpus = {
        str(n["NodeID"]): int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive")
    }
    cpus = {node: count for node, count in cpus.items() if count >= 1}
    if len(cpus) < 2:
        return []
    order = sorted(cpus)  # the same order in every call, whatever ray.nodes() returns
    slots: list[str] = []
    for round_ in range(max(cpus.values())):
        slots.extend(node for node in order if cpus[node] > round_)
    return slots


class RayRunner:
    """Runs partitions as parallel Ray tasks over a frame put in the object store once,
    spread over the cluster's nodes by their CPUs (:func:`spread_slots`).

    Args:
        frame: The frame; every task reads it from the object store (zero-copy on its node).
        name: Prefix of the tasks' names in the Ray dashboard (``pipeline/node``).
    """

    def __init__(self, frame: pd.DataFrame, name: str = "partition") -> None:
        import ray

        self._ray = ray
        self._ref = ray.put(frame)
        self.name = name
        self.round = 0
        self._slots = spread_slots(ray.nodes())

    def map(self, fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.round += 1
        task = _remote(fn)
        refs = []
        for i, call in enumerate(calls):
            options: dict[str, Any] = {"name": f"{self.name}/{fn.__name__.strip('_')}-{i}"}
            if self._slots:
                node = self._slots[i % len(self._slots)]
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
            refs.append(task.options(**options).remote(self._ref, *call))
        return list(self._ray.get(refs))


def make_runner(frame: pd.DataFrame, partitions: int, name: str) -> PartitionRunner:
    """A :class:`RayRunner` for several partitions, a :class:`LocalRunner` for one."""
    return RayRunner(frame, name) if partitions > 1 else LocalRunner(frame)
