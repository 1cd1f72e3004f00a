"""Validation of a ``PipelineSpec``: everything that can be known before a run, at once.

:func:`validate_spec` walks the whole spec and collects one :class:`FieldViolation` per
problem, with the exact field path (``spec.nodes[3].depends_on[0]``), so a user fixes a spec
in one round trip instead of one error at a time. The graph algorithms and the wiring of
inputs by artifact kind live in :mod:`ray_nodes.graph`, shared with the engine.

Templates in params are checked, then replaced for schema validation by what a run with
the default parameters would see: ``{{ parameters.X }}`` by X's declared default (every
declared parameter has one: ``PipelineSpec.parameters`` maps names to values),
``{{ run.name }}`` by a sample run name and ``{{ run.scheduled_time }}`` by a sample
RFC 3339 time. So ``{"sleep_seconds": "{{ parameters.pause }}"}`` passes when ``pause``
defaults to a number and fails, at ``params.sleep_seconds``, when it defaults to a string.
A run that overrides a parameter with a value of another type is checked when it starts.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.errors import FieldViolation, InvalidArgumentError
from control_plane.pipelines.specs import spec_digest
from ray_nodes.graph import GraphNode, dependency_map, find_cycles, format_cycle, topological_order
from ray_nodes.node import ParamProblem
from ray_nodes.params import split_params, struct_to_python, value_to_python
from ray_nodes.registry import NodeRegistry
from ray_nodes.templating import (
    Path,
    TemplateRef,
    format_path,
    iter_leaves,
    malformed_reason,
    parse_reference,
    reference_problem,
    substitute,
)
from ray_nodes.wiring import wire
from raypipe.v1 import pipeline_spec_pb2

__all__ = [
    "MAX_DETAIL_BYTES",
    "MAX_NODES",
    "MAX_RETRIES",
    "MAX_VIOLATIONS",
    "REASON",
    "ValidatedSpec",
    "spec_violations",
    "validate_spec",
]

_log = logging.getLogger(__name__)

#: ``ErrorInfo.reason`` of a rejected spec.
REASON = "INVALID_PIPELINE_SPEC"
#: The most nodes a spec may have.
MAX_NODES = 10_000
#: The most retries a node may ask for; more is a loop, not a retry policy.
MAX_RETRIES = 100
#: Violations listed in one error by default.
MAX_VIOLATIONS = 50
#: Bytes of violation text (fields and descriptions) listed in one error by default. The
#: ``google.rpc.Status`` travels in the ``grpc-status-details-bin`` trailer, and gRPC clients
#: refuse trailers above 8 KiB some of the time and above 16 KiB always (the call then fails
#: with RESOURCE_EXHAUSTED and the violations are lost), so a spec with thousands of broken
#: nodes lists the first problems and says how many more there are.
MAX_DETAIL_BYTES = 4_500
#: Stand-ins for run fields when params are checked against their schema.
SAMPLE_RUN_NAME = "runs/validation-sample"
SAMPLE_SCHEDULED_TIME = "1970-01-01T00:00:00Z"

_NODE_ID = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Python exception class name, optionally qualified (`requests.exceptions.Timeout`).
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's documented range
_MAX_DESCRIPTION = 300  # keeps one violation from eating the trailer on its own


@dataclass(frozen=True)
class ValidatedSpec:
    """What validation learned about a valid spec.

    Attributes:
        topological_order: Node ids, each after its upstream nodes; ties keep spec order.
        spec_digest: See :func:`control_plane.pipelines.specs.spec_digest`.
        inputs: Node id -> the upstream ids whose outputs its ``run`` receives, in order.
    """

    topological_order: tuple[str, ...]
    spec_digest: str
    inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)


#: The longest MLflow experiment name a spec may give (tracking.experiment).
MAX_EXPERIMENT_NAME = 256


def validate_spec(
    spec: pipeline_spec_pb2.PipelineSpec,
    registry: NodeRegistry,
    *,
    field_prefix: str = "spec",
    max_violations: int | None = MAX_VIOLATIONS,
    max_detail_bytes: int | None = MAX_DETAIL_BYTES,
) -> ValidatedSpec:
    """Check ``spec`` completely and describe it, or raise with every problem found.

    Args:
        spec: The DAG to check.
        registry: The node types it may use.
        field_prefix: Path of the spec in the request, prefixed to every violation's field
            (``pipeline_version.spec`` for CreatePipelineVersion).
        max_violations: Most violations listed (``None``: no limit).
        max_detail_bytes: Most UTF-8 bytes of violation fields and descriptions listed
            (``None``: no limit). When either limit leaves problems out, a last violation
            on ``field_prefix`` says how many.

    Raises:
        InvalidArgumentError: reason ``INVALID_PIPELINE_SPEC``, one violation per problem.
    """
    violations, order, inputs = spec_violations(spec, registry, field_prefix=field_prefix)
    if violations:
        listed = _within_limits(violations, max_violations, max_detail_bytes)
        if len(listed) < len(violations):
            left_out = len(violations) - len(listed)
            listed.append(
                FieldViolation(
                    field_prefix, f"{left_out} more problems not listed; fix these and retry"
                )
            )
        raise InvalidArgumentError.from_violations(listed, reason=REASON)
    return ValidatedSpec(topological_order=order, spec_digest=spec_digest(spec), inputs=inputs)


def _within_limits(
    violations: list[FieldViolation], max_count: int | None, max_bytes: int | None
) -> list[FieldViolation]:
    listed: list[FieldViolation] = []
    size = 0
    for violation in violations:
        # Field, description and a few bytes of protobuf framing.
        cost = len(violation.field.encode()) + len(violation.description.encode()) + 8
        if max_count is not None and len(listed) >= max_count:
            break
        if max_bytes is not None and listed and size + cost > max_bytes:
            break
        listed.append(violation)
        size += cost
    return listed


def spec_violations(
    spec: pipeline_spec_pb2.PipelineSpec, registry: NodeRegistry, *, field_prefix: str = "spec"
) -> tuple[list[FieldViolation], tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Every problem with ``spec``, uncapped, plus the (partial) topological order and inputs.

    The order and inputs cover only the nodes that could be analysed; they are complete
    when there are no violations.
    """
    checker = _SpecChecker(spec, registry, field_prefix)
    checker.run()
    return checker.violations, checker.order, checker.inputs


class _SpecChecker:
    """One validation pass; it holds the state the checks share."""

    def __init__(
        self, spec: pipeline_spec_pb2.PipelineSpec, registry: NodeRegistry, prefix: str
    ) -> None:
        self.spec = spec
        self.registry = registry
        self.prefix = prefix
        self.violations: list[FieldViolation] = []
        self.order: tuple[str, ...] = ()
        self.inputs: dict[str, tuple[str, ...]] = {}
        self.parameters: dict[str, Any] = {}
        # Many nodes share a type and params (a fan-out of identical noops); schema checks
        # are the slow part of validation, so each distinct (type, params) is checked once.
        self._param_cache: dict[tuple[str, str], list[ParamProblem]] = {}

    def add(self, where: str, description: str) -> None:
        if len(description) > _MAX_DESCRIPTION:
            description = description[: _MAX_DESCRIPTION - 1] + "…"
        self.violations.append(FieldViolation(where, description))

    def run(self) -> None:
        spec, nodes_field = self.spec, f"{self.prefix}.nodes"
        count = len(spec.nodes)
        if count > MAX_NODES:
            # Stop here: the rest would be work proportional to an input already refused.
            self.add(nodes_field, f"has {count:,} nodes; a pipeline may have at most {MAX_NODES:,}")
            return
        if count == 0:
            self.add(nodes_field, "a pipeline needs at least one node")
        if spec.failure_policy not in pipeline_spec_pb2.FailurePolicy.values():
            self.add(
                f"{self.prefix}.failure_policy",
                f"unknown FailurePolicy value {spec.failure_policy}; use "
                "FAILURE_POLICY_FAIL_FAST or FAILURE_POLICY_CONTINUE_INDEPENDENT",
            )
        self.check_parameters()
        self.check_tracking(spec.tracking)
        first_index: dict[str, int] = {}
        for i, node in enumerate(spec.nodes):
            first_index.setdefault(node.id, i)
        graph_nodes: list[GraphNode] = []
        for i, node in enumerate(spec.nodes):
            graph_nodes.append(self.check_node(i, node, first_index))
        self.check_graph(graph_nodes, first_index)

    # -- spec-level ----------------------------------------------------------------------------

    def check_tracking(self, tracking: pipeline_spec_pb2.TrackingPolicy) -> None:
        """The MLflow experiment name, when given, is short and has no outer spaces."""
        name = tracking.experiment
        if not name:
            return
        where = f"{self.prefix}.tracking.experiment"
        if len(name) > MAX_EXPERIMENT_NAME:
            self.add(where, f"is {len(name)} characters long; at most {MAX_EXPERIMENT_NAME}")
        if name != name.strip():
            self.add(where, "must not start or end with whitespace")
        if tracking.disabled:
            self.add(where, "names an experiment while tracking.disabled is true")

    def check_parameters(self) -> None:
        where = f"{self.prefix}.parameters"
        for name in sorted(self.spec.parameters):
            value = value_to_python(self.spec.parameters[name])
            self.parameters[name] = value
            if not _PARAMETER_NAME.fullmatch(name):
                self.add(
                    where,
                    f"parameter name {name!r} must be letters, digits and underscores, not "
                    "starting with a digit, so that '{{ parameters.NAME }}' can name it",
                )
            for path, leaf in iter_leaves(value):
                if _non_finite(leaf):
                    at = f"parameter {name!r}" + (f" at {format_path(path)}" if path else "")
                    self.add(where, f"{at}: {_number(leaf)} is not a finite number")

    # -- one node ------------------------------------------------------------------------------

    def check_node(
        self, i: int, node: pipeline_spec_pb2.Node, first_index: Mapping[str, int]
    ) -> GraphNode:
        base = f"{self.prefix}.nodes[{i}]"
        if not node.id:
            self.add(f"{base}.id", "is required")
        elif not _NODE_ID.fullmatch(node.id):
            self.add(
                f"{base}.id",
                f"{node.id!r} is not a valid node id: 1 to 63 lowercase letters, digits and "
                "underscores, starting with a letter",
            )
        elif first_index[node.id] != i:
            self.add(
                f"{base}.id",
                f"duplicate node id {node.id!r}: {self.prefix}.nodes[{first_index[node.id]}] "
                "has it already",
            )
        known_type = self.check_type(base, node.type)
        input_from = self.check_params(base, node, known_type)
        self.check_depends_on(base, node, first_index)
        if node.HasField("resources"):
            self.check_resources(f"{base}.resources", node.resources)
        if node.HasField("retry"):
            self.check_retry(f"{base}.retry", node.retry)
        if node.HasField("timeout"):
            problem = _duration_problem(node.timeout)
            if problem:
                self.add(f"{base}.timeout", problem)
        return GraphNode(node.id, node.type, tuple(node.depends_on), input_from)

    def check_type(self, base: str, type_name: str) -> bool:
        if type_name in self.registry:
            return True
        if not type_name:
            self.add(f"{base}.type", "is required: a registered node type such as 'noop'")
            return False
        close = self.registry.close_matches(type_name)
        if close:
            hint = f"did you mean {' or '.join(map(repr, close))}?"
        elif len(self.registry) <= 12:
            hint = f"registered types: {', '.join(self.registry.names())}"
        else:
            hint = "ListNodeTypes lists the registered types"
        self.add(f"{base}.type", f"unknown node type {type_name!r}; {hint}")
        return False

    def check_params(self, base: str, node: pipeline_spec_pb2.Node, known_type: bool) -> Any:
        """Check templates and values, then the type's schema; returns ``input_from``."""
        where = f"{base}.params"
        params, input_from = split_params(struct_to_python(node.params))
        reported: set[Path] = set()
        has_refs = False
        for path, leaf in iter_leaves(params):
            problem: str | None = None
            if _non_finite(leaf):
                problem = f"{_number(leaf)} is not a finite number"
            else:
                ref = parse_reference(leaf)
                if ref is not None:
                    has_refs = True
                    problem = reference_problem(ref, self.parameters)
                else:
                    problem = malformed_reason(leaf)
            if problem is not None:
                reported.add(path)
                self.add(_join(where, path), problem)
        if not known_type:
            return input_from
        if has_refs:
            params = substitute(params, self._sample_value)
        skip = {format_path(p) for p in reported}
        for found in self._param_problems(node.type, params):
            # A path already reported (an unknown template, NaN) would only repeat itself.
            if found.path in skip:
                continue
            self.add(f"{where}.{found.path}" if found.path else where, found.description)
        return input_from

    def _sample_value(self, path: Path, ref: TemplateRef) -> Any:
        if ref.namespace == "parameters" and ref.name in self.parameters:
            return self.parameters[ref.name]
        if ref == TemplateRef("run", "name"):
            return SAMPLE_RUN_NAME
        if ref == TemplateRef("run", "scheduled_time"):
            return SAMPLE_SCHEDULED_TIME
        return f"{{{{ {ref} }}}}"  # unknown: reported already; leave it as written

    def _param_problems(self, type_name: str, params: dict[str, Any]) -> list[ParamProblem]:
        key = (type_name, json.dumps(params, sort_keys=True, default=str))
        cached = self._param_cache.get(key)
        if cached is None:
            try:
                cached = self.registry.check_params(type_name, params)
            except Exception as exc:
                # A plugin's check_params is user code; its bug must not become a 500 for a
                # whole spec, nor pass silently.
                _log.exception("check_params of node type %r raised", type_name)
                cached = [
                    ParamProblem(
                        "", f"could not be checked: {type_name}.check_params raised {exc!r}"
                    )
                ]
            self._param_cache[key] = cached
        return cached

    def check_depends_on(
        self, base: str, node: pipeline_spec_pb2.Node, first_index: Mapping[str, int]
    ) -> None:
        seen: dict[str, int] = {}
        for j, up in enumerate(node.depends_on):
            where = f"{base}.depends_on[{j}]"
            if up in seen:
                self.add(where, f"duplicate of depends_on[{seen[up]}] ({up!r})")
                continue
            seen[up] = j
            if not up:
                self.add(where, "is empty; name an upstream node id")
            elif up == node.id:
                self.add(where, f"node {up!r} cannot depend on itself")
            elif up not in first_index:
                self.add(where, f"unknown node {up!r}{_did_you_mean(up, first_index)}")

    def check_resources(self, base: str, resources: pipeline_spec_pb2.Resources) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(resources, name)
            if not math.isfinite(value):
                self.add(f"{base}.{name}", f"{_number(value)} is not a finite number")
            elif value < 0:
                self.add(f"{base}.{name}", f"must not be negative (got {value:g})")
        gpus = resources.num_gpus
        if math.isfinite(gpus) and gpus > 1 and not gpus.is_integer():
            self.add(
                f"{base}.num_gpus",
                f"{gpus:g} GPUs: a fraction shares one device, so above 1 it must be a whole "
                "number",
            )
        if resources.memory_bytes < 0:
            self.add(f"{base}.memory_bytes", f"must not be negative (got {resources.memory_bytes})")
        if resources.gpu_policy not in pipeline_spec_pb2.GpuPolicy.values():
            self.add(
                f"{base}.gpu_policy",
                f"unknown GpuPolicy value {resources.gpu_policy}; use GPU_POLICY_REQUIRED or "
                "GPU_POLICY_PREFERRED",
            )

    def check_retry(self, base: str, retry: pipeline_spec_pb2.RetryPolicy) -> None:
        if retry.max_retries < 0:
            self.add(f"{base}.max_retries", f"must not be negative (got {retry.max_retries})")
        elif retry.max_retries > MAX_RETRIES:
            self.add(
                f"{base}.max_retries", f"at most {MAX_RETRIES} retries (got {retry.max_retries})"
            )
        for name in ("initial_backoff", "max_backoff"):
            if retry.HasField(name):
                problem = _duration_problem(getattr(retry, name))
                if problem:
                    self.add(f"{base}.{name}", problem)
        multiplier = retry.backoff_multiplier
        if not math.isfinite(multiplier):
            self.add(f"{base}.backoff_multiplier", f"{_number(multiplier)} is not a finite number")
        elif multiplier != 0 and multiplier < 1:
            # 0 is "unset" (the default, 1); a factor below 1 would shrink the delays.
            self.add(
                f"{base}.backoff_multiplier",
                f"must be at least 1, or 0 for the default (got {multiplier:g})",
            )
        for k, name in enumerate(retry.retry_on):
            if not _EXCEPTION_NAME.fullmatch(name):
                self.add(f"{base}.retry_on[{k}]", f"{name!r} is not an exception type name")

    # -- the graph -----------------------------------------------------------------------------

    def check_graph(self, nodes: Sequence[GraphNode], first_index: Mapping[str, int]) -> None:
        deps = dependency_map(nodes)
        for cycle in find_cycles(deps):
            # Report the edge that closes the cycle: the first node's dependency on the last.
            i = first_index[cycle[0]]
            j = list(self.spec.nodes[i].depends_on).index(cycle[-1])
            self.add(f"{self.prefix}.nodes[{i}].depends_on[{j}]", f"cycle: {format_cycle(cycle)}")
        self.order = topological_order(deps, strict=False)
        wiring = wire(nodes, self.registry, self.order)
        for problem in wiring.problems:
            self.add(
                f"{self.prefix}.nodes[{first_index[problem.node_id]}].{problem.field}",
                problem.description,
            )
        self.inputs = wiring.inputs


def _join(base: str, path: Path) -> str:
    rest = format_path(path)
    if not rest:
        return base
    return base + rest if rest.startswith("[") else f"{base}.{rest}"


def _number(value: float) -> str:
    """A number as JSON users write it (``NaN``, ``Infinity``), not as Python prints it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:g}"


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _did_you_mean(name: str, candidates: Mapping[str, int]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _duration_problem(duration: Any) -> str | None:
    """Why a ``google.protobuf.Duration`` is not a valid non-negative duration, or None."""
    seconds, nanos = duration.seconds, duration.nanos
    if abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) > 999_999_999:
        return "is out of range"
    if (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        return "is malformed: seconds and nanos must have the same sign"
    if seconds < 0 or nanos < 0:
        return "must not be negative"
    return None
