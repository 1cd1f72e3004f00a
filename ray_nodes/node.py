"""The node-type extension point: a class with a parameter schema and a ``run`` method.

A node type declares the artifact kinds it consumes and produces, so a wrongly wired DAG is
a validation error when a version is created, not a crash in the middle of a run. Built-in
types live one per module in :mod:`ray_nodes`; users add their own through the Python
entry-point group ``raypipe.nodes`` (see :mod:`ray_nodes.registry`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


class ArtifactKind(enum.Enum):
    """Kinds of values passed between nodes; names mirror ``raypipe.v1.ArtifactKind``."""

    DATASET = "dataset"
    SPLIT = "split"
    MODEL = "model"
    METRICS = "metrics"
    ANY = "any"
    NONE = "none"


@dataclass(frozen=True)
class ResourceDefaults:
    """Resources a node type asks for when the node's spec leaves them unset."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int = 0


@dataclass(frozen=True)
class ParamProblem:
    """A problem with a node's params found beyond the JSON Schema; ``path`` is relative to
    ``params`` (``"hyperparameters.max_depth"``), empty for the params as a whole."""

    path: str
    description: str


@dataclass
class NodeContext:
    """What a running node knows about where it runs. Built by the engine inside the task."""

    run_id: str
    run_name: str
    pipeline_id: str
    node_id: str
    attempt: int
    params: dict[str, Any]
    num_cpus: float
    gpu_ids: Sequence[int] = ()
    artifact_root: str = ""
    data_roots: Sequence[Path] = ()
    notes: list[str] = field(default_factory=list)
    _report: Callable[[Mapping[str, float], str], None] | None = None

    def report(self, metrics: Mapping[str, float], message: str = "") -> None:
        """Send progress (a training epoch's losses, say) to watchers while the node runs."""
        if self._report is not None:
            self._report(dict(metrics), message)


class NodeType:
    """Base class of node types.

    Subclasses set the class attributes and implement :meth:`run`. The class docstring is the
    user's reference and is served by ``ListNodeTypes`` as the description.
    """

    #: The registered name used in ``Node.type``.
    type_name: ClassVar[str]
    #: JSON Schema (draft 2020-12) of the node's params.
    parameter_schema: ClassVar[dict[str, Any]] = {"type": "object", "additionalProperties": False}
    #: Kinds consumed from upstream nodes, in the order ``run`` receives them. Each is found
    #: among the outputs of the nodes in ``depends_on`` by kind (see :mod:`ray_nodes.graph`);
    #: when two upstream nodes give the same kind, the node's reserved param ``input_from``
    #: (``{"model": "train", "split": "scale"}``) names the one to use. Upstream nodes that
    #: match no input are ordering-only dependencies.
    inputs: ClassVar[tuple[ArtifactKind, ...]] = ()
    #: When True, ``inputs`` holds exactly one kind and the node receives the output of every
    #: upstream node that gives it (``ANY``: every upstream node that gives an artifact at all),
    #: zero or more, in ``depends_on`` order. ``noop`` joins branches this way.
    variadic_inputs: ClassVar[bool] = False
    #: Kind produced.
    output: ClassVar[ArtifactKind] = ArtifactKind.NONE
    #: Default resources.
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults()

    @classmethod
    def description(cls) -> str:
        """The class docstring, dedented."""
        import inspect

        return inspect.getdoc(cls) or ""

    @classmethod
    def output_kind(cls, input_kinds: Sequence[ArtifactKind]) -> ArtifactKind:
        """The kind this node gives when its inputs have ``input_kinds`` (in ``run`` order).

        Validation calls it in topological order to type-check the wiring downstream. The
        default is :attr:`output`; a pass-through type (``noop``) overrides it so that a
        concrete kind flows through it instead of degrading to ``ANY``.
        """
        return cls.output

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        """Checks the JSON Schema cannot express (cross-field rules). Default: none."""
        return []

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Execute the node on its inputs (the outputs of the nodes it depends on, matched to
        :attr:`inputs` by kind) and return its output."""
        raise NotImplementedError(f"{type(self).__name__}.run")
