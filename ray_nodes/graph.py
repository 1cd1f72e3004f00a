"""The DAG of a pipeline spec: its nodes and dependencies, topological order and cycles.

One implementation serves the control plane's validation and the Ray engine. How a node's
inputs are matched to upstream outputs is :mod:`ray_nodes.wiring`.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray_nodes.errors import RayNodesError
from ray_nodes.params import INPUT_FROM, value_to_python

__all__ = [
    "CycleError",
    "GraphNode",
    "dependency_map",
    "find_cycles",
    "format_cycle",
    "nodes_from_spec",
    "topological_order",
]


@dataclass(frozen=True)
class GraphNode:
    """What the wiring needs to know about a node.

    Attributes:
        id: The node id.
        type: The registered type name.
        depends_on: Upstream ids as written in the spec (may hold repeats or unknown ids;
            :func:`dependency_map` cleans them).
        input_from: The raw value of ``params.input_from``, ``None`` when absent.
    """

    id: str
    type: str
    depends_on: tuple[str, ...]
    input_from: Any = None


def nodes_from_spec(spec: Any) -> list[GraphNode]:
    """The nodes of a ``raypipe.v1.PipelineSpec`` (or anything shaped like one)."""
    out = []
    for node in spec.nodes:
        raw = node.params.fields.get(INPUT_FROM)
        out.append(
            GraphNode(
                id=node.id,
                type=node.type,
                depends_on=tuple(node.depends_on),
                input_from=None if raw is None else value_to_python(raw),
            )
        )
    return out


def dependency_map(nodes: Iterable[GraphNode]) -> dict[str, tuple[str, ...]]:
    """Node id -> its distinct known upstream ids, in spec order.

    Later nodes that repeat an id, self-dependencies and unknown ids are left out: validation
    reports those separately, and the graph algorithms need a well-formed map.
    """
    nodes = list(nodes)
    ids = {n.id for n in nodes}
    deps: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        if node.id in deps:
            continue
        deps[node.id] = tuple(
            dict.fromkeys(u for u in node.depends_on if u in ids and u != node.id)
        )
    return deps


# -- order and cycles --------------------------------------------------------------------------


class CycleError(RayNodesError, ValueError):
    """The graph has cycles; ``cycles`` lists one per strongly connected component."""

    def __init__(self, cycles: list[tuple[str, ...]]) -> None:
        super().__init__("; ".join(f"cycle: {format_cycle(c)}" for c in cycles))
        self.cycles = cycles


def format_cycle(cycle: Sequence[str]) -> str:
    """``("a", "b", "c")`` -> ``"a -> b -> c -> a"`` (data-flow direction)."""
    return " -> ".join([*cycle, cycle[0]])


def _check_keys(deps: Mapping[str, Sequence[str]]) -> None:
    for node, ups in deps.items():
        for u in ups:
            if u not in deps:
                raise ValueError(f"node {node!r} depends on unknown node {u!r}")


def topological_order(deps: Mapping[str, Sequence[str]], *, strict: bool = True) -> tuple[str, ...]:
    """Node ids so that every node comes after its upstream nodes.

    Among the nodes ready at any point the one listed first in ``deps`` comes first, so the
    order is a deterministic function of the spec. Kahn's algorithm: iterative, O(V+E log V).

    Args:
        deps: Node id -> upstream ids; every upstream id must be a key.
        strict: When False, nodes on or downstream of a cycle are left out instead of
            raising, so that validation can still check the rest of the graph.

    Raises:
        CycleError: the graph has a cycle (only when ``strict``).
        ValueError: an upstream id is not a key of ``deps``.
    """
    _check_keys(deps)
    names = list(deps)
    index = {name: i for i, name in enumerate(names)}
    indegree = [0] * len(names)
    downstream: list[list[int]] = [[] for _ in names]
    for name, ups in deps.items():
        i = index[name]
        for u in dict.fromkeys(ups):
            downstream[index[u]].append(i)
            indegree[i] += 1
    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(names[i])
        for j in downstream[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready, j)
    if strict and len(order) < len(names):
        raise CycleError(find_cycles(deps))
    return tuple(order)


def _strongly_connected(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that a 10,000-node chain does not hit recursion limits."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in deps:
        if root in index:
            continue
        # Each frame is (node, iterator over its upstream ids).
        work = [(root, iter(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(deps[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """One cycle per strongly connected component that has one, in data-flow order.

    Each cycle starts at the component's node listed first in ``deps`` and is a shortest
    cycle through it: ``("a", "b", "c")`` means b depends on a, c on b and a on c, i.e.
    ``a -> b -> c -> a``; the closing edge is an entry of the first node's ``depends_on``.
    A node that depends on itself is the cycle ``(node,)``. Cycles are ordered by their
    first node's position in ``deps``.

    Raises:
        ValueError: an upstream id is not a key of ``deps``.
    """
    _check_keys(deps)
    position = {name: i for i, name in enumerate(deps)}
    cycles: list[tuple[str, ...]] = []
    for component in _strongly_connected(deps):
        members = set(component)
        start = min(component, key=position.__getitem__)
        if len(component) == 1:
            if start in deps[start]:
                cycles.append((start,))
            continue
        # Breadth-first search along data flow (upstream -> downstream) inside the component
        # from start until a node that start depends on: the shortest cycle through start.
        downstream: dict[str, list[str]] = {m: [] for m in component}
        for m in sorted(component, key=position.__getitem__):
            for u in dict.fromkeys(deps[m]):
                if u in members:
                    downstream[u].append(m)
        closers = set(deps[start]) & members
        parent: dict[str, str | None] = {start: None}
        queue = deque([start])
        end: str | None = None
        while queue and end is None:
            node = queue.popleft()
            for nxt in downstream[node]:
                if nxt in parent:
                    continue
                parent[nxt] = node
                if nxt in closers:
                    end = nxt
                    break
                queue.append(nxt)
        path: list[str] = []
        cursor: str | None = end
        while cursor is not None:
            path.append(cursor)
            cursor = parent[cursor]
        cycles.append(tuple(reversed(path)))
    cycles.sort(key=lambda c: position[c[0]])
    return cycles
