"""The ``noop`` node type: passes its inputs through, optionally after a sleep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ResourceDefaults

__all__ = ["NoopNode"]


class NoopNode(NodeType):
    """Pass the outputs of the upstream nodes through unchanged.

    Use it to join branches (one node that depends on several others), as a placeholder while
    a pipeline takes shape, in tests, and to measure per-node overhead.

    Parameters:
        sleep_seconds (number, >= 0, default 0): how long to sleep before passing the inputs
            on. The sleep is cancelled with the run.

    Inputs: the output of every upstream node that gives an artifact, in ``depends_on`` order
    (upstream nodes that give nothing, such as a model saver, only order the run).

    Output: nothing when it has no inputs, the input itself when it has one (so its kind flows
    through: a ``noop`` after a loader gives a dataset), otherwise the list of inputs.

    Resources: one CPU by default, like a plain Ray task, so that overhead benchmarks compare
    like with like; set ``resources.num_cpus`` to a fraction to pack many noops on a core.

    Example::

        - id: join
          type: noop
          depends_on: [evaluate, save]
          params: {sleep_seconds: 0.5}
    """

    type_name: ClassVar[str] = "noop"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "sleep_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 0,
                "description": "Seconds to sleep before passing the inputs on.",
            },
        },
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.ANY,)
    variadic_inputs: ClassVar[bool] = True
    output: ClassVar[ArtifactKind] = ArtifactKind.ANY
    default_resources: ClassVar[ResourceDefaults] = ResourceDefaults(num_cpus=1.0)

    @classmethod
    def output_kind(cls, input_kinds: Sequence[ArtifactKind]) -> ArtifactKind:
        """Nothing for no input, the input's kind for one, ``ANY`` (a list) for several."""
        if not input_kinds:
            return ArtifactKind.NONE
        if len(input_kinds) == 1:
            return input_kinds[0]
        return ArtifactKind.ANY

    def run(self, ctx: NodeContext, inputs: Sequence[Any]) -> Any:
        """Sleep ``sleep_seconds``, then return the inputs as :meth:`output_kind` describes."""
        seconds = float(ctx.params.get("sleep_seconds", 0) or 0)
        if seconds > 0:
            # time.sleep is interruptible: Ray's cancel raises KeyboardInterrupt in the task.
            time.sleep(seconds)
        if not inputs:
            return None
        if len(inputs) == 1:
            return inputs[0]
        return list(inputs)
