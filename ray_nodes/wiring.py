"""How a node finds its inputs: upstream outputs matched to its declared input kinds.

One implementation serves the control plane's validation and the Ray engine, so a spec that
validates is wired at run time exactly as validation said.

A node type declares the artifact kinds it consumes (:attr:`NodeType.inputs`, in the order
``run`` receives them) and the kind it gives. Each node's *effective* output kind is computed
in topological order with :meth:`NodeType.output_kind`, so a pass-through node (``noop``)
after a loader gives a dataset rather than "anything". Then, for each declared input kind:

1. If the node's params hold the reserved key ``input_from``, a map from input kind to the
   upstream node id to use (``{"model": "train", "split": "scale"}``; a list of ids when the
   type declares that kind more than once), that choice wins. It must name nodes in
   ``depends_on`` whose output fits the kind.
2. Otherwise the upstream nodes (``depends_on``, in order) that give exactly that kind are
   used; upstream nodes whose kind cannot be known statically (``ANY``, such as a ``noop``
   joining several branches) fill in when no exact match exists. Concrete kinds are matched
   first, then ``ANY`` inputs take from what is left; one upstream feeds one input.
3. No candidate is a *missing* input, more candidates than the type needs an *ambiguous* one;
   both are validation errors (on ``depends_on``) until ``input_from`` settles them.

Upstream nodes that no input takes, and upstream nodes that give nothing (``NONE``), are
ordering-only dependencies; that is allowed. A *variadic* type (``noop``) takes every upstream
output of its one declared kind, in ``depends_on`` order, and does not accept ``input_from``.

``input_from`` is handled here and by the engine for every type: it is never part of a type's
parameter schema and is removed (:func:`ray_nodes.params.split_params`) before params reach
``run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray_nodes.errors import RayNodesError
from ray_nodes.graph import GraphNode, dependency_map, nodes_from_spec, topological_order
from ray_nodes.node import ArtifactKind, NodeType
from ray_nodes.params import INPUT_FROM
from ray_nodes.registry import NodeRegistry

__all__ = ["Wiring", "WiringError", "WiringProblem", "match_inputs", "wire"]


# -- wiring by kind ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WiringProblem:
    """A missing, ambiguous or badly named input.

    Attributes:
        node_id: The node whose inputs are wrong.
        field: Path relative to the node: ``depends_on`` or ``params.input_from.model``.
        description: What is wrong and how to fix it.
    """

    node_id: str
    field: str
    description: str


@dataclass(frozen=True)
class Wiring:
    """The outcome of :func:`wire`.

    Attributes:
        inputs: Node id -> upstream ids in the order ``run`` receives their outputs; absent
            for nodes that could not be wired.
        kinds: Node id -> effective output kind; ``None`` where it cannot be known (an
            unknown node type upstream).
        problems: Every wiring problem found.
    """

    inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kinds: dict[str, ArtifactKind | None] = field(default_factory=dict)
    problems: tuple[WiringProblem, ...] = ()


class WiringError(RayNodesError, ValueError):
    """A spec whose inputs cannot be wired; validation would have rejected it."""

    def __init__(self, problems: Sequence[WiringProblem]) -> None:
        super().__init__(
            "; ".join(f"nodes[{p.node_id}].{p.field}: {p.description}" for p in problems)
        )
        self.problems = tuple(problems)


def _fits(given: ArtifactKind, wanted: ArtifactKind) -> bool:
    """Whether an upstream output of kind ``given`` may feed an input of kind ``wanted``."""
    if given is ArtifactKind.NONE:
        return False
    return wanted is ArtifactKind.ANY or given is wanted or given is ArtifactKind.ANY


def _kind_name(kind: ArtifactKind | None) -> str:
    return kind.value if kind is not None else "unknown"


def _describe(ups: Sequence[str], kinds: Mapping[str, ArtifactKind | None]) -> str:
    if not ups:
        return "it depends on no node"
    listed = ", ".join(f"{u} ({_kind_name(kinds[u])})" for u in ups)
    return f"upstream gives: {listed}"


class _NodeWiring:
    """Wires one node; a class only to keep the steps of :func:`wire` readable."""

    def __init__(
        self,
        node: GraphNode,
        cls: type[NodeType],
        ups: tuple[str, ...],
        kinds: Mapping[str, ArtifactKind | None],
    ) -> None:
        self.node = node
        self.cls = cls
        self.ups = ups
        self.kinds = kinds
        self.problems: list[WiringProblem] = []

    def problem(self, where: str, description: str) -> None:
        self.problems.append(WiringProblem(self.node.id, where, description))

    def kind(self, u: str) -> ArtifactKind:
        k = self.kinds[u]
        assert k is not None  # callers skip nodes with unknown upstream kinds
        return k

    def explicit(self) -> dict[ArtifactKind, list[str]]:
        """The valid entries of ``input_from``; reports the invalid ones."""
        raw = self.node.input_from
        base = f"params.{INPUT_FROM}"
        if raw is None:
            return {}
        if self.cls.variadic_inputs:
            self.problem(base, f"{self.cls.type_name} takes every upstream output; remove it")
            return {}
        if not isinstance(raw, dict):
            self.problem(
                base, 'must map an input kind to an upstream node id, e.g. {"model": "train"}'
            )
            return {}
        declared = ", ".join(dict.fromkeys(k.value for k in self.cls.inputs)) or "none"
        chosen: dict[ArtifactKind, list[str]] = {}
        for key, value in raw.items():
            where = f"{base}.{key}"
            kind = next((k for k in self.cls.inputs if k.value == key), None)
            if kind is None:
                self.problem(
                    where, f"{self.cls.type_name} takes no {key!r} input (inputs: {declared})"
                )
                continue
            wanted = self.cls.inputs.count(kind)
            ids = [value] if isinstance(value, str) else value
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                self.problem(where, "must be an upstream node id or a list of them")
                continue
            if len(set(ids)) != len(ids):
                self.problem(where, "names the same node more than once")
                continue
            if len(ids) != wanted:
                self.problem(
                    where,
                    f"names {len(ids)} node(s); {self.cls.type_name} takes {wanted} {key} input(s)",
                )
                continue
            ok = True
            for i, up in enumerate(ids):
                at = where if isinstance(value, str) else f"{where}[{i}]"
                if up not in self.node.depends_on:
                    self.problem(at, f"{up!r} is not in depends_on")
                    ok = False
                elif up in self.ups and not _fits(self.kind(up), kind):
                    self.problem(at, f"{up!r} gives {self.kind(up).value}, not {key}")
                    ok = False
                elif up not in self.ups:
                    # Named but not a usable upstream (itself, or a duplicate-id node):
                    # depends_on reports that already.
                    ok = False
            if ok:
                chosen[kind] = list(ids)
        return chosen

    def variadic(self) -> tuple[str, ...]:
        wanted = self.cls.inputs[0]
        return tuple(u for u in self.ups if _fits(self.kind(u), wanted))

    def by_kind(self) -> tuple[str, ...] | None:
        """Upstream ids in ``inputs`` order, or None after reporting why not."""
        declared = self.cls.inputs
        slots: list[str | None] = [None] * len(declared)
        used: set[str] = set()
        for kind, ids in self.explicit().items():
            positions = [i for i, k in enumerate(declared) if k is kind]
            for pos, up in zip(positions, ids, strict=True):
                slots[pos] = up
                used.add(up)
        givers = [u for u in self.ups if self.kind(u) is not ArtifactKind.NONE]
        # Concrete kinds first so that ANY inputs take only what no concrete input claimed.
        order = sorted(dict.fromkeys(declared), key=lambda k: k is ArtifactKind.ANY)
        complete = True
        for kind in order:
            positions = [i for i, k in enumerate(declared) if k is kind and slots[i] is None]
            if not positions:
                continue
            need = len(positions)
            pool = [u for u in givers if u not in used]
            if kind is ArtifactKind.ANY:
                exact, loose = pool, []
            else:
                exact = [u for u in pool if self.kind(u) is kind]
                loose = [u for u in pool if self.kind(u) is ArtifactKind.ANY]
            if len(exact) == need:
                pick = exact
            elif len(exact) < need and len(exact) + len(loose) == need:
                pick = [u for u in pool if u in exact or u in loose]
            else:
                complete = False
                candidates = exact if len(exact) > need else exact + loose
                count = f"{need} {kind.value} inputs" if need > 1 else f"a {kind.value} input"
                if len(candidates) < need:
                    self.problem(
                        "depends_on",
                        f"{self.cls.type_name} needs {count} but no upstream node gives "
                        f"{'enough' if candidates else 'one'}; {_describe(self.ups, self.kinds)}",
                    )
                else:
                    gives = "an artifact" if kind is ArtifactKind.ANY else kind.value
                    self.problem(
                        "depends_on",
                        f"ambiguous {kind.value} input: {', '.join(candidates)} all give "
                        f"{gives}; name the one to use in params.{INPUT_FROM}, e.g. "
                        f'{{"{kind.value}": "{candidates[0]}"}}',
                    )
                continue
            for pos, up in zip(positions, pick, strict=True):
                slots[pos] = up
                used.add(up)
        if not complete or any(s is None for s in slots):
            return None
        return tuple(s for s in slots if s is not None)


def wire(
    nodes: Sequence[GraphNode],
    registry: NodeRegistry,
    order: Sequence[str] | None = None,
) -> Wiring:
    """Match every node's declared inputs to upstream outputs, as the module doc describes.

    Args:
        nodes: The spec's nodes; for a repeated id only the first counts.
        registry: Where node types are looked up. Nodes of unknown types are skipped and
            their output kind is unknown, which silences checks downstream of them.
        order: A topological order of (some of) the nodes; nodes not in it are skipped.
            Default: computed, raising :class:`CycleError` on a cycle.

    Returns:
        The inputs and effective kinds of every node that could be wired, and the problems.
    """
    deps = dependency_map(nodes)
    if order is None:
        order = topological_order(deps)
    first: dict[str, GraphNode] = {}
    for node in nodes:
        first.setdefault(node.id, node)
    kinds: dict[str, ArtifactKind | None] = {}
    inputs: dict[str, tuple[str, ...]] = {}
    problems: list[WiringProblem] = []
    for node_id in order:
        node = first[node_id]
        if node.type not in registry:
            kinds[node_id] = None
            continue
        cls = registry.get(node.type)
        ups = deps[node_id]
        if any(kinds.get(u) is None for u in ups):
            # Something upstream has an unknown type: its kind is unknowable, so checking
            # would only produce noise; the unknown type is reported on its own.
            kinds[node_id] = None if cls.output is ArtifactKind.ANY else cls.output
            continue
        step = _NodeWiring(node, cls, ups, kinds)
        chosen = step.variadic() if cls.variadic_inputs else step.by_kind()
        if cls.variadic_inputs:
            step.explicit()  # only to report input_from, which variadic types refuse
        problems.extend(step.problems)
        if chosen is None:
            kinds[node_id] = None if cls.output is ArtifactKind.ANY else cls.output
            continue
        inputs[node_id] = chosen
        kinds[node_id] = cls.output_kind(tuple(step.kind(u) for u in chosen))
    return Wiring(inputs=inputs, kinds=kinds, problems=tuple(problems))


def match_inputs(spec: Any, registry: NodeRegistry) -> dict[str, tuple[str, ...]]:
    """For a valid ``PipelineSpec``: node id -> the upstream ids whose outputs ``run`` gets,
    in the order its type's ``inputs`` declares. The engine's one source of input wiring.

    Raises:
        CycleError: the spec has a cycle.
        WiringError: an input is missing or ambiguous, or ``input_from`` is wrong.
        ValueError: node ids repeat or a dependency is unknown.
    """
    nodes = nodes_from_spec(spec)
    ids = [n.id for n in nodes]
    if len(set(ids)) != len(ids):
        raise ValueError("node ids are not unique")
    known = set(ids)
    for n in nodes:
        if n.type not in registry:
            raise ValueError(f"node {n.id!r} has unknown type {n.type!r}")
        for u in n.depends_on:
            if u not in known or u == n.id:
                raise ValueError(f"node {n.id!r} depends on unknown node or itself: {u!r}")
    deps = dependency_map(nodes)
    wiring = wire(nodes, registry, topological_order(deps))
    if wiring.problems:
        raise WiringError(wiring.problems)
    return wiring.inputs
