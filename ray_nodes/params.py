"""A node's params: from the spec's protobuf ``Struct`` to plain Python, ``input_from`` (the
wiring, see :mod:`ray_nodes.graph`) split off, and templates resolved against a run.

:func:`node_params` is the one resolver of what a node's ``run`` receives: the engine's
compiler, the cache key and the params recorded in MLflow all call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray_nodes.templating import merge_parameters, resolve

__all__ = [
    "INPUT_FROM",
    "node_params",
    "run_parameters",
    "split_params",
    "struct_to_python",
    "value_to_python",
]

#: The reserved param key that names which upstream node feeds which input kind.
INPUT_FROM = "input_from"


def value_to_python(value: Any) -> Any:
    """A ``google.protobuf.Value`` as plain Python (``None``, float, str, bool, dict, list)."""
    which = value.WhichOneof("kind")
    if which == "struct_value":
        return struct_to_python(value.struct_value)
    if which == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    if which == "null_value" or which is None:
        return None
    return getattr(value, which)


def struct_to_python(struct: Any) -> dict[str, Any]:
    """A ``google.protobuf.Struct`` as a plain dict.

    Unlike ``json_format.MessageToDict`` this keeps NaN and infinities (so validation can
    report them) and skips the JSON round trip, which matters for 10,000-node specs.
    """
    fields = struct.fields
    # A Struct is a map with no order; sorted keys make everything derived from it (the
    # order of validation errors, say) deterministic.
    return {key: value_to_python(fields[key]) for key in sorted(fields)}


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """``(params without input_from, input_from or None)``: what ``run`` sees, and the wiring."""
    rest = {k: v for k, v in params.items() if k != INPUT_FROM}
    return rest, params.get(INPUT_FROM)


def run_parameters(spec: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """A run's effective parameters: the spec's declared defaults overlaid with ``values``.

    Raises:
        TemplateError: ``values`` names a parameter the spec does not declare.
    """
    defaults = {k: value_to_python(v) for k, v in spec.parameters.items()}
    return merge_parameters(defaults, values)


def node_params(
    node: Any, *, parameters: Mapping[str, Any], run_name: str, scheduled_time: str
) -> dict[str, Any]:
    """The params a spec node's ``run`` receives: its params without ``input_from`` (wiring,
    not a param) and with every template resolved against the run.

    The one resolver of a node's effective params: the engine's compiler, the cache key and
    the params recorded in MLflow all call it, so they cannot disagree.

    Args:
        node: A ``pipeline_spec_pb2.Node``.
        parameters: The run's effective parameters (:func:`run_parameters`).
        run_name: What ``{{ run.name }}`` becomes.
        scheduled_time: What ``{{ run.scheduled_time }}`` becomes (RFC 3339, or empty).

    Raises:
        TemplateError: a template names an unknown parameter.
    """
    params, _ = split_params(struct_to_python(node.params))
    return resolve(params, parameters=parameters, run_name=run_name, scheduled_time=scheduled_time)
