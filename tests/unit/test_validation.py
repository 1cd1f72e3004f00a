"""Pipeline spec validation: every problem, with its exact field path, all at once; the graph
algorithms and the wiring of inputs by artifact kind that the engine shares."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from google.protobuf import json_format

from control_plane.errors import InvalidArgumentError
from control_plane.pipelines.specs import canonical_spec_bytes, spec_digest
from control_plane.pipelines.validation import MAX_NODES, ValidatedSpec, validate_spec
from ray_nodes.graph import CycleError, find_cycles, topological_order
from ray_nodes.node import ArtifactKind, NodeType, ParamProblem
from ray_nodes.nodes.noop import NoopNode
from ray_nodes.registry import NodeRegistry
from ray_nodes.wiring import WiringError, match_inputs
from raypipe.v1.pipeline_spec_pb2 import PipelineSpec

D, S, M, X = ArtifactKind.DATASET, ArtifactKind.SPLIT, ArtifactKind.MODEL, ArtifactKind.METRICS


# -- test-only node types with real kinds ------------------------------------------------------


class Loader(NodeType):
    """Loads a dataset."""

    type_name: ClassVar[str] = "loader"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "columns": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    output: ClassVar[ArtifactKind] = D


class Splitter(NodeType):
    """Splits a dataset."""

    type_name: ClassVar[str] = "splitter"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"test_size": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (D,)
    output: ClassVar[ArtifactKind] = S


class Trainer(NodeType):
    """Trains a model."""

    type_name: ClassVar[str] = "trainer"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"hyperparameters": {"type": "object"}},
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (S,)
    output: ClassVar[ArtifactKind] = M

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        depth = params.get("hyperparameters", {}).get("max_depth")
        if depth is not None and depth < 1:
            return [ParamProblem("hyperparameters.max_depth", "must be at least 1")]
        return []


class Evaluator(NodeType):
    """Evaluates a model on a split."""

    type_name: ClassVar[str] = "evaluator"
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (M, S)
    output: ClassVar[ArtifactKind] = X


class Saver(NodeType):
    """Saves a model; gives nothing downstream."""

    type_name: ClassVar[str] = "saver"
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (M,)


class Joiner(NodeType):
    """Joins two datasets."""

    type_name: ClassVar[str] = "joiner"
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (D, D)
    output: ClassVar[ArtifactKind] = D


class Inspector(NodeType):
    """Takes one artifact of any kind."""

    type_name: ClassVar[str] = "inspector"
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.ANY,)
    output: ClassVar[ArtifactKind] = X


class Fragile(NodeType):
    """Its check_params has a bug."""

    type_name: ClassVar[str] = "fragile"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[ParamProblem]:
        raise ZeroDivisionError("plugin bug")


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in (NoopNode, Loader, Splitter, Trainer, Evaluator, Saver, Joiner, Inspector, Fragile):
        reg.register(cls)
    return reg


# -- helpers -----------------------------------------------------------------------------------


def make_spec(*nodes: dict[str, Any], **fields: Any) -> PipelineSpec:
    """A spec from its protobuf JSON mapping, as a YAML file or a client would send it."""
    return json_format.ParseDict({"nodes": list(nodes), **fields}, PipelineSpec())


def node(id: str, type: str = "noop", *deps: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "type": type, "depends_on": list(deps), **fields}


def chain(n: int) -> PipelineSpec:
    spec = PipelineSpec()
    for i in range(n):
        added = spec.nodes.add(id=f"n{i}", type="noop")
        if i:
            added.depends_on.append(f"n{i - 1}")
    return spec


def problems(spec: PipelineSpec, registry: NodeRegistry, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgumentError) as caught:
        validate_spec(spec, registry, max_violations=None, max_detail_bytes=None, **kw)
    assert caught.value.reason == "INVALID_PIPELINE_SPEC"
    return [(v.field, v.description) for v in caught.value.violations]


def only(spec: PipelineSpec, registry: NodeRegistry) -> tuple[str, str]:
    """The single violation of ``spec``."""
    found = problems(spec, registry)
    assert len(found) == 1, found
    return found[0]


# -- valid specs -------------------------------------------------------------------------------


def test_a_valid_spec_is_described(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("evaluate", "evaluator", "split", "train"),
        node("train", "trainer", "split"),
        node("split", "splitter", "load", params={"test_size": 0.25}),
        node("load", "loader", params={"path": "data.csv", "columns": ["a", "b"]}),
    )
    result = validate_spec(spec, registry)
    assert isinstance(result, ValidatedSpec)
    assert result.topological_order == ("load", "split", "train", "evaluate")
    assert result.spec_digest == spec_digest(spec)
    # The evaluator gets (model, split) as declared, whatever order depends_on lists them in.
    assert result.inputs == {
        "load": (),
        "split": ("load",),
        "train": ("split",),
        "evaluate": ("train", "split"),
    }


def test_topological_order_keeps_spec_order_among_ready_nodes(registry: NodeRegistry) -> None:
    spec = make_spec(node("c"), node("a", "noop", "c"), node("b"), node("d", "noop", "b", "a"))
    assert validate_spec(spec, registry).topological_order == ("c", "a", "b", "d")


def test_a_chain_of_10000_nodes_is_valid(registry: NodeRegistry) -> None:
    result = validate_spec(chain(MAX_NODES), registry)
    assert result.topological_order == tuple(f"n{i}" for i in range(MAX_NODES))
    # Noops with nothing upstream give nothing, so nothing flows down this chain...
    assert result.inputs["n9999"] == ()
    # ...but a dataset at its head flows through all 9,999 noops.
    spec = chain(MAX_NODES)
    spec.nodes[0].type = "loader"
    spec.nodes.add(id="split", type="splitter", depends_on=[f"n{MAX_NODES - 1}"])
    del spec.nodes[1]  # stay at the limit
    spec.nodes[1].depends_on[:] = ["n0"]
    result = validate_spec(spec, registry)
    assert result.inputs["n9999"] == ("n9998",)
    assert result.inputs["split"] == ("n9999",)


# -- node count --------------------------------------------------------------------------------


def test_no_nodes(registry: NodeRegistry) -> None:
    assert only(PipelineSpec(), registry) == ("spec.nodes", "a pipeline needs at least one node")


def test_more_than_10000_nodes_is_one_violation(registry: NodeRegistry) -> None:
    field, description = only(chain(MAX_NODES + 1), registry)
    assert field == "spec.nodes"
    assert "10,001 nodes" in description
    assert "at most 10,000" in description


def test_field_prefix_is_applied(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", "noop", "zz"))
    assert problems(spec, registry, field_prefix="pipeline_version.spec") == [
        ("pipeline_version.spec.nodes[0].depends_on[0]", "unknown node 'zz'")
    ]


# -- ids and types -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["A", "1a", "_a", "a-b", "a b", "é", "a" * 64])
def test_malformed_node_id(registry: NodeRegistry, bad: str) -> None:
    field, description = only(make_spec(node("ok"), node(bad)), registry)
    assert field == "spec.nodes[1].id"
    assert repr(bad) in description
    assert "not a valid node id" in description


def test_longest_node_id_is_valid(registry: NodeRegistry) -> None:
    validate_spec(make_spec(node("a" + "b_9" * 20 + "xy")), registry)


def test_missing_node_id(registry: NodeRegistry) -> None:
    assert only(make_spec(node("")), registry) == ("spec.nodes[0].id", "is required")


def test_duplicate_node_id_is_reported_on_the_later_one(registry: NodeRegistry) -> None:
    spec = make_spec(node("a"), node("b"), node("a"), node("a"))
    assert problems(spec, registry) == [
        ("spec.nodes[2].id", "duplicate node id 'a': spec.nodes[0] has it already"),
        ("spec.nodes[3].id", "duplicate node id 'a': spec.nodes[0] has it already"),
    ]


def test_unknown_node_type_suggests_close_matches(registry: NodeRegistry) -> None:
    field, description = only(make_spec(node("a", "nop")), registry)
    assert field == "spec.nodes[0].type"
    assert description == "unknown node type 'nop'; did you mean 'noop'?"


def test_unknown_node_type_without_close_match_lists_types(registry: NodeRegistry) -> None:
    _, description = only(make_spec(node("a", "zzzzzz")), registry)
    assert "registered types: evaluator, fragile, inspector" in description


def test_missing_node_type(registry: NodeRegistry) -> None:
    field, description = only(make_spec(node("a", "")), registry)
    assert field == "spec.nodes[0].type"
    assert description.startswith("is required")


# -- dependencies and cycles -------------------------------------------------------------------


def test_unknown_dependency_names_the_id(registry: NodeRegistry) -> None:
    spec = make_spec(node("load"), node("a", "noop", "load", "laod", "ghost"))
    assert problems(spec, registry) == [
        ("spec.nodes[1].depends_on[1]", "unknown node 'laod'; did you mean 'load'?"),
        ("spec.nodes[1].depends_on[2]", "unknown node 'ghost'"),
    ]


def test_self_dependency(registry: NodeRegistry) -> None:
    spec = make_spec(node("a"), node("b", "noop", "a", "b"))
    assert only(spec, registry) == (
        "spec.nodes[1].depends_on[1]",
        "node 'b' cannot depend on itself",
    )


def test_duplicate_dependency(registry: NodeRegistry) -> None:
    spec = make_spec(node("a"), node("c"), node("b", "noop", "a", "c", "a"))
    assert only(spec, registry) == (
        "spec.nodes[2].depends_on[2]",
        "duplicate of depends_on[0] ('a')",
    )


def test_empty_dependency(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", "noop", ""))
    assert only(spec, registry) == (
        "spec.nodes[0].depends_on[0]",
        "is empty; name an upstream node id",
    )


def test_cycle_names_its_nodes_in_data_flow_order(registry: NodeRegistry) -> None:
    # b depends on a, c on b, a on c: data flows a -> b -> c -> a. The cycle is named from
    # the node listed first (b), and the violation sits on the dependency that closes it.
    spec = make_spec(
        node("x"), node("b", "noop", "a"), node("a", "noop", "x", "c"), node("c", "noop", "b")
    )
    assert only(spec, registry) == ("spec.nodes[1].depends_on[0]", "cycle: b -> c -> a -> b")


def test_each_strongly_connected_component_is_reported_once(registry: NodeRegistry) -> None:
    spec = make_spec(
        # A figure eight: two cycles through a, one component.
        node("a", "noop", "c", "e"),
        node("b", "noop", "a"),
        node("c", "noop", "b"),
        node("d", "noop", "a"),
        node("e", "noop", "d"),
        # A separate two-node cycle, and a node downstream of both.
        node("p", "noop", "q"),
        node("q", "noop", "p"),
        node("z", "noop", "c", "q"),
    )
    assert problems(spec, registry) == [
        ("spec.nodes[0].depends_on[0]", "cycle: a -> b -> c -> a"),
        ("spec.nodes[5].depends_on[0]", "cycle: p -> q -> p"),
    ]


def test_a_10000_node_cycle_is_found_without_recursion(registry: NodeRegistry) -> None:
    spec = chain(MAX_NODES)
    spec.nodes[0].depends_on.append(f"n{MAX_NODES - 1}")
    field, description = only(spec, registry)
    assert field == "spec.nodes[0].depends_on[0]"
    assert description.startswith("cycle: n0 -> n1 -> n2 -> ")


def test_graph_functions_directly() -> None:
    deps = {"a": ("c",), "b": ("a",), "c": ("b",), "d": ("d",), "e": ()}
    assert find_cycles(deps) == [("a", "b", "c"), ("d",)]
    with pytest.raises(CycleError, match=r"cycle: a -> b -> c -> a; cycle: d -> d") as caught:
        topological_order(deps)
    assert caught.value.cycles == [("a", "b", "c"), ("d",)]
    assert topological_order(deps, strict=False) == ("e",)
    assert topological_order({"x": (), "y": ("x",), "w": ()}) == ("x", "y", "w")
    with pytest.raises(ValueError, match="unknown node 'q'"):
        topological_order({"a": ("q",)})


# -- params ------------------------------------------------------------------------------------


def test_params_failing_the_schema(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("load", "loader", params={"path": 3, "columns": ["a", 1], "colums": []}),
        node("noop", "noop", params={"sleep_seconds": -1}),
    )
    assert problems(spec, registry) == [
        ("spec.nodes[0].params.colums", "unknown parameter; did you mean 'columns'?"),
        ("spec.nodes[0].params.columns[1]", "1.0 is not of type 'string'"),
        ("spec.nodes[0].params.path", "3.0 is not of type 'string'"),
        ("spec.nodes[1].params.sleep_seconds", "-1.0 is less than the minimum of 0"),
    ]


def test_the_types_own_param_checks(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("load", "loader"),
        node("split", "splitter", "load"),
        node("train", "trainer", "split", params={"hyperparameters": {"max_depth": 0}}),
    )
    assert only(spec, registry) == (
        "spec.nodes[2].params.hyperparameters.max_depth",
        "must be at least 1",
    )


def test_a_crashing_check_params_is_a_violation_not_a_crash(registry: NodeRegistry) -> None:
    field, description = only(make_spec(node("f", "fragile")), registry)
    assert field == "spec.nodes[0].params"
    assert "ZeroDivisionError" in description


def test_params_of_an_unknown_type_are_not_schema_checked(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", "nop", params={"anything": 1}))
    assert [f for f, _ in problems(spec, registry)] == ["spec.nodes[0].type"]


def test_non_finite_numbers_in_params_and_parameters(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", "noop"))
    spec.nodes[0].params.update({"sleep_seconds": float("nan")})
    spec.parameters["lr"].number_value = float("inf")
    assert problems(spec, registry) == [
        ("spec.parameters", "parameter 'lr': Infinity is not a finite number"),
        ("spec.nodes[0].params.sleep_seconds", "NaN is not a finite number"),
    ]


def test_templates_use_the_declared_defaults_for_schema_checks(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("a", "noop", params={"sleep_seconds": "{{ parameters.pause }}"}),
        node("b", "loader", params={"path": "{{run.name}}", "columns": "{{ parameters.cols }}"}),
        parameters={"pause": 0.5, "cols": ["x", "y"]},
    )
    validate_spec(spec, registry)


def test_a_template_whose_default_has_the_wrong_type_fails_the_schema(
    registry: NodeRegistry,
) -> None:
    spec = make_spec(
        node("a", "noop", params={"sleep_seconds": "{{ parameters.pause }}"}),
        node("b", "noop", params={"sleep_seconds": "{{ run.scheduled_time }}"}),
        parameters={"pause": "soon"},
    )
    assert problems(spec, registry) == [
        ("spec.nodes[0].params.sleep_seconds", "'soon' is not of type 'number'"),
        ("spec.nodes[1].params.sleep_seconds", "'1970-01-01T00:00:00Z' is not of type 'number'"),
    ]


def test_templates_naming_undeclared_things(registry: NodeRegistry) -> None:
    spec = make_spec(
        node(
            "a",
            "loader",
            params={
                "path": "{{ parameters.data_path }}",
                "columns": ["{{ run.id }}", "{{ params.x }}", "col_{{ run.name }}"],
            },
        ),
        parameters={"data_pth": "x.csv"},
    )
    found = problems(spec, registry)
    # Params are a map: their problems come in key order.
    assert [f for f, _ in found] == [
        "spec.nodes[0].params.columns[0]",
        "spec.nodes[0].params.columns[1]",
        "spec.nodes[0].params.columns[2]",
        "spec.nodes[0].params.path",
    ]
    assert "unknown run field 'id'" in found[0][1]
    assert "namespace 'params'" in found[1][1]
    assert "whole value" in found[2][1]
    assert "unknown parameter 'data_path'" in found[3][1]
    assert "declared: data_pth" in found[3][1]


def test_bad_parameter_names(registry: NodeRegistry) -> None:
    spec = make_spec(node("a"), parameters={"data-path": "x", "ok_name": 1})
    field, description = only(spec, registry)
    assert field == "spec.parameters"
    assert "'data-path'" in description


# -- resources, retry, timeout, failure policy -------------------------------------------------


def test_resources(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("a", resources={"num_cpus": -1, "num_gpus": -0.5, "memory_bytes": "-5"}),
        node("b", resources={"num_gpus": 1.5}),
        node(
            "c", resources={"num_gpus": 0.25, "num_cpus": 0.5, "gpu_policy": "GPU_POLICY_PREFERRED"}
        ),
        node("d", resources={"num_gpus": 2}),
        node("e"),
    )
    spec.nodes[4].resources.num_cpus = float("inf")
    spec.nodes[4].resources.num_gpus = float("nan")
    spec.nodes[4].resources.gpu_policy = 9  # type: ignore[assignment]
    assert problems(spec, registry) == [
        ("spec.nodes[0].resources.num_cpus", "must not be negative (got -1)"),
        ("spec.nodes[0].resources.num_gpus", "must not be negative (got -0.5)"),
        ("spec.nodes[0].resources.memory_bytes", "must not be negative (got -5)"),
        (
            "spec.nodes[1].resources.num_gpus",
            "1.5 GPUs: a fraction shares one device, so above 1 it must be a whole number",
        ),
        ("spec.nodes[4].resources.num_cpus", "Infinity is not a finite number"),
        ("spec.nodes[4].resources.num_gpus", "NaN is not a finite number"),
        (
            "spec.nodes[4].resources.gpu_policy",
            "unknown GpuPolicy value 9; use GPU_POLICY_REQUIRED or GPU_POLICY_PREFERRED",
        ),
    ]


def test_retry(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("a", retry={"max_retries": -1, "initial_backoff": "-1s", "backoff_multiplier": 0.5}),
        node(
            "b",
            retry={
                "max_retries": 101,
                "max_backoff": "-0.5s",
                "retry_on": ["ok.Error", "bad name"],
            },
        ),
        node("c", retry={"max_retries": 100, "initial_backoff": "1s", "backoff_multiplier": 2}),
        node("d", retry={"backoff_multiplier": -3}),
        node("e"),
    )
    spec.nodes[4].retry.backoff_multiplier = float("nan")
    spec.nodes[4].retry.initial_backoff.seconds = 1
    spec.nodes[4].retry.initial_backoff.nanos = -5
    assert problems(spec, registry) == [
        ("spec.nodes[0].retry.max_retries", "must not be negative (got -1)"),
        ("spec.nodes[0].retry.initial_backoff", "must not be negative"),
        (
            "spec.nodes[0].retry.backoff_multiplier",
            "must be at least 1, or 0 for the default (got 0.5)",
        ),
        ("spec.nodes[1].retry.max_retries", "at most 100 retries (got 101)"),
        ("spec.nodes[1].retry.max_backoff", "must not be negative"),
        ("spec.nodes[1].retry.retry_on[1]", "'bad name' is not an exception type name"),
        (
            "spec.nodes[3].retry.backoff_multiplier",
            "must be at least 1, or 0 for the default (got -3)",
        ),
        (
            "spec.nodes[4].retry.initial_backoff",
            "is malformed: seconds and nanos must have the same sign",
        ),
        ("spec.nodes[4].retry.backoff_multiplier", "NaN is not a finite number"),
    ]


def test_timeout(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", timeout="-2s"), node("b", timeout="0s"), node("c", timeout="30s"))
    assert only(spec, registry) == ("spec.nodes[0].timeout", "must not be negative")


def test_failure_policy(registry: NodeRegistry) -> None:
    validate_spec(
        make_spec(node("a"), failure_policy="FAILURE_POLICY_CONTINUE_INDEPENDENT"), registry
    )
    spec = make_spec(node("a"))
    spec.failure_policy = 7  # type: ignore[assignment]
    field, description = only(spec, registry)
    assert field == "spec.failure_policy"
    assert "unknown FailurePolicy value 7" in description


# -- all at once -------------------------------------------------------------------------------


def test_four_different_problems_are_four_violations(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("a", "noop", "c"),
        node("Bad"),
        node("b", "noop", "ghost", params={"sleep_seconds": "x"}),
        node("c", "noop", "a"),
    )
    assert problems(spec, registry) == [
        (
            "spec.nodes[1].id",
            "'Bad' is not a valid node id: 1 to 63 lowercase letters, digits and underscores, starting with a letter",
        ),
        ("spec.nodes[2].params.sleep_seconds", "'x' is not of type 'number'"),
        ("spec.nodes[2].depends_on[0]", "unknown node 'ghost'"),
        ("spec.nodes[0].depends_on[0]", "cycle: a -> c -> a"),
    ]


def test_violations_are_capped_with_a_count_of_the_rest(registry: NodeRegistry) -> None:
    spec = make_spec(*(node(f"n{i}", "nope") for i in range(40)))
    with pytest.raises(InvalidArgumentError) as caught:
        validate_spec(spec, registry, max_violations=10)
    violations = caught.value.violations
    assert len(violations) == 11
    assert violations[-1].field == "spec"
    assert violations[-1].description.startswith("30 more problems not listed")
    # The error still converts to the google.rpc.Status that goes over the wire.
    assert caught.value.to_status().code == 3  # INVALID_ARGUMENT


def test_by_default_violations_fit_in_a_grpc_trailer(registry: NodeRegistry) -> None:
    # 2,000 problems with long descriptions: listing them all would exceed gRPC's metadata
    # limits and lose the whole error, so the default lists what fits and counts the rest.
    spec = make_spec(*(node(f"n{i}", "x" * 60) for i in range(2000)))
    with pytest.raises(InvalidArgumentError) as caught:
        validate_spec(spec, registry)
    violations = caught.value.violations
    assert 10 < len(violations) <= 51
    assert violations[-1].description.startswith(f"{2000 - len(violations) + 1} more problems")
    assert len(caught.value.to_status().SerializeToString()) < 8_000


# -- wiring by kind ----------------------------------------------------------------------------


def test_a_trainer_fed_a_raw_dataset_is_rejected(registry: NodeRegistry) -> None:
    spec = make_spec(node("load", "loader"), node("train", "trainer", "load"))
    assert only(spec, registry) == (
        "spec.nodes[1].depends_on",
        "trainer needs a split input but no upstream node gives one; upstream gives: load (dataset)",
    )


def test_a_node_with_inputs_but_no_upstream(registry: NodeRegistry) -> None:
    field, description = only(make_spec(node("train", "trainer")), registry)
    assert field == "spec.nodes[0].depends_on"
    assert description.endswith("it depends on no node")


def test_an_ambiguous_input_needs_input_from(registry: NodeRegistry) -> None:
    nodes = [
        node("load", "loader"),
        node("s1", "splitter", "load"),
        node("s2", "splitter", "load"),
        node("train", "trainer", "s1"),
    ]
    spec = make_spec(*nodes, node("eval", "evaluator", "train", "s1", "s2"))
    assert only(spec, registry) == (
        "spec.nodes[4].depends_on",
        'ambiguous split input: s1, s2 all give split; name the one to use in params.input_from, e.g. {"split": "s1"}',
    )
    spec = make_spec(
        *nodes,
        node("eval", "evaluator", "train", "s1", "s2", params={"input_from": {"split": "s2"}}),
    )
    assert validate_spec(spec, registry).inputs["eval"] == ("train", "s2")


def test_bad_input_from(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("load", "loader"),
        node("split", "splitter", "load"),
        node("train", "trainer", "split"),
        node("e1", "evaluator", "train", "split", params={"input_from": {"split": "other"}}),
        node("e2", "evaluator", "train", "split", params={"input_from": {"model": "split"}}),
        node("e3", "evaluator", "train", "split", params={"input_from": {"dataset": "load"}}),
        node("e4", "evaluator", "train", "split", params={"input_from": ["train"]}),
        node(
            "e5",
            "evaluator",
            "train",
            "split",
            params={"input_from": {"split": ["split", "train"]}},
        ),
        node("j", "noop", "train", params={"input_from": {"model": "train"}}),
    )
    assert problems(spec, registry) == [
        ("spec.nodes[3].params.input_from.split", "'other' is not in depends_on"),
        ("spec.nodes[4].params.input_from.model", "'split' gives split, not model"),
        (
            "spec.nodes[5].params.input_from.dataset",
            "evaluator takes no 'dataset' input (inputs: model, split)",
        ),
        (
            "spec.nodes[6].params.input_from",
            'must map an input kind to an upstream node id, e.g. {"model": "train"}',
        ),
        (
            "spec.nodes[7].params.input_from.split",
            "names 2 node(s); evaluator takes 1 split input(s)",
        ),
        ("spec.nodes[8].params.input_from", "noop takes every upstream output; remove it"),
    ]


def test_input_from_is_not_part_of_the_types_schema(registry: NodeRegistry) -> None:
    # The loader's schema forbids extra keys; input_from is reserved and handled generically.
    spec = make_spec(
        node("load", "loader"),
        node("split", "splitter", "load", params={"input_from": {"dataset": "load"}}),
    )
    assert validate_spec(spec, registry).inputs["split"] == ("load",)


def test_repeated_input_kinds_are_filled_in_depends_on_order(registry: NodeRegistry) -> None:
    loads = [node("a", "loader"), node("b", "loader"), node("c", "loader")]
    spec = make_spec(*loads, node("j", "joiner", "b", "a"))
    assert validate_spec(spec, registry).inputs["j"] == ("b", "a")
    spec = make_spec(*loads, node("j", "joiner", "a", "b", "c"))
    assert only(spec, registry)[1].startswith("ambiguous dataset input: a, b, c")
    spec = make_spec(
        *loads, node("j", "joiner", "a", "b", "c", params={"input_from": {"dataset": ["c", "a"]}})
    )
    assert validate_spec(spec, registry).inputs["j"] == ("c", "a")
    spec = make_spec(
        *loads, node("j", "joiner", "a", "b", params={"input_from": {"dataset": ["a", "a"]}})
    )
    assert only(spec, registry) == (
        "spec.nodes[3].params.input_from.dataset",
        "names the same node more than once",
    )
    spec = make_spec(*loads, node("j", "joiner", "a"))
    assert only(spec, registry)[1].startswith(
        "joiner needs 2 dataset inputs but no upstream node gives enough"
    )


def test_kinds_flow_through_noop(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("load", "loader"),
        node("pass", "noop", "load"),
        node("split", "splitter", "pass"),
        node("train", "trainer", "split"),
        node("save", "saver", "train"),
        node("eval", "evaluator", "train", "split"),
        # Joins an artifact-less saver and the metrics: passes the metrics through.
        node("done", "noop", "save", "eval"),
        node("look", "inspector", "done"),
    )
    result = validate_spec(spec, registry)
    assert result.inputs["split"] == ("pass",)
    assert result.inputs["done"] == ("eval",)
    assert result.inputs["look"] == ("done",)
    # A noop after a dataset still gives a dataset, so a trainer after it is a wrong wiring.
    bad = make_spec(
        node("load", "loader"), node("pass", "noop", "load"), node("train", "trainer", "pass")
    )
    assert only(bad, registry)[1] == (
        "trainer needs a split input but no upstream node gives one; upstream gives: pass (dataset)"
    )


def test_a_noop_joining_several_branches_gives_an_unknown_kind_that_fits(
    registry: NodeRegistry,
) -> None:
    spec = make_spec(
        node("load", "loader"),
        node("split", "splitter", "load"),
        node("join", "noop", "load", "split"),
        node("train", "trainer", "join"),
    )
    result = validate_spec(spec, registry)
    assert result.inputs["join"] == ("load", "split")
    assert result.inputs["train"] == ("join",)


def test_ordering_only_dependencies_are_allowed(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("warmup", "noop"),
        node("load", "loader", "warmup"),
        node("other", "loader"),
        node("split", "splitter", "load", "warmup"),
        node("train", "trainer", "split", "other"),
    )
    result = validate_spec(spec, registry)
    assert result.inputs == {
        "warmup": (),
        "load": (),
        "other": (),
        "split": ("load",),
        "train": ("split",),
    }


def test_an_input_of_any_kind(registry: NodeRegistry) -> None:
    spec = make_spec(node("load", "loader"), node("look", "inspector", "load"))
    assert validate_spec(spec, registry).inputs["look"] == ("load",)
    spec = make_spec(
        node("load", "loader"),
        node("split", "splitter", "load"),
        node("look", "inspector", "load", "split"),
    )
    assert only(spec, registry) == (
        "spec.nodes[2].depends_on",
        'ambiguous any input: load, split all give an artifact; name the one to use in params.input_from, e.g. {"any": "load"}',
    )
    spec.nodes[2].params.update({"input_from": {"any": "split"}})
    assert validate_spec(spec, registry).inputs["look"] == ("split",)


def test_unknown_types_upstream_cause_no_wiring_noise(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("load", "lodaer"), node("split", "splitter", "load"), node("train", "trainer", "split")
    )
    assert [f for f, _ in problems(spec, registry)] == ["spec.nodes[0].type"]


def test_match_inputs_is_what_validation_reports(registry: NodeRegistry) -> None:
    spec = make_spec(
        node("eval", "evaluator", "split", "train"),
        node("train", "trainer", "split"),
        node("split", "splitter", "load"),
        node("load", "loader"),
    )
    assert match_inputs(spec, registry) == validate_spec(spec, registry).inputs
    with pytest.raises(WiringError, match="needs a split input"):
        match_inputs(make_spec(node("load", "loader"), node("train", "trainer", "load")), registry)
    with pytest.raises(CycleError):
        match_inputs(make_spec(node("a", "noop", "b"), node("b", "noop", "a")), registry)
    with pytest.raises(ValueError, match="not unique"):
        match_inputs(make_spec(node("a"), node("a")), registry)


# -- digest ------------------------------------------------------------------------------------


def test_digest_is_sha256_of_the_canonical_json(registry: NodeRegistry) -> None:
    spec = make_spec(node("a", params={"sleep_seconds": 1}), parameters={"x": "é"})
    canonical = canonical_spec_bytes(spec)
    assert (
        canonical
        == (
            '{"nodes":[{"id":"a","params":{"sleep_seconds":1.0},"type":"noop"}],"parameters":{"x":"é"}}'
        ).encode()
    )
    digest = spec_digest(spec)
    assert digest == hashlib.sha256(canonical).hexdigest()
    assert len(digest) == 64
    assert digest == digest.lower()
    assert validate_spec(spec, registry).spec_digest == digest


def test_digest_ignores_how_the_spec_was_built() -> None:
    from_json = make_spec(
        node("b", "noop", "a", params={"z": 1, "a": {"y": 2, "x": [3]}}),
        node("a"),
        parameters={"p": 1, "q": "two", "r": {"s": True}},
        failurePolicy="FAILURE_POLICY_FAIL_FAST",
    )
    by_code = PipelineSpec()
    by_code.failure_policy = 1  # type: ignore[assignment]
    by_code.parameters["r"].struct_value.update({"s": True})
    by_code.parameters["q"].string_value = "two"
    by_code.parameters["p"].number_value = 1
    b = by_code.nodes.add()
    b.params.update({"a": {"x": [3], "y": 2}})
    b.params.update({"z": 1})
    b.depends_on.append("a")
    b.type = "noop"
    b.id = "b"
    by_code.nodes.add(type="noop", id="a")
    assert spec_digest(by_code) == spec_digest(from_json)
    # A round trip through the wire format changes nothing either.
    assert spec_digest(PipelineSpec.FromString(by_code.SerializeToString())) == spec_digest(
        from_json
    )


def test_digest_changes_with_the_spec() -> None:
    base = make_spec(node("a"), node("b", "noop", "a"))
    variants = [
        make_spec(node("a"), node("b", "noop")),
        make_spec(node("a"), node("b", "noop", "a", params={"sleep_seconds": 1})),
        make_spec(node("a"), node("b", "noop", "a"), parameters={"x": 1}),
        make_spec(
            node("a"), node("b", "noop", "a"), failure_policy="FAILURE_POLICY_CONTINUE_INDEPENDENT"
        ),
        make_spec(node("b", "noop", "a"), node("a")),  # node order is part of what was written
    ]
    digests = {spec_digest(base), *(spec_digest(v) for v in variants)}
    assert len(digests) == len(variants) + 1
