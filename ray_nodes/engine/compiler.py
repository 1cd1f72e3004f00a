"""From a run's submission to what the supervisor hands Ray: per node, its resolved params,
its inputs in the order ``run`` takes them, its Ray options, and whether the cluster can
run it at all.

Plain Ray waits forever for a resource that no node of the cluster has. Before anything is
submitted, each node's demand is compared with the largest total that any single alive node
offers: a GPU node on a CPU-only cluster fails at once, naming the node and the resource
(or, with ``GPU_POLICY_PREFERRED``, runs on CPU and says so). A node that merely has to
wait for busy resources is not affected. On a cluster with an autoscaler (:func:`autoscaling`:
one that reports to Ray's autoscaler state), a node the autoscaler may be able to hold waits
for it instead (the supervisor bounds the wait), and one it reports it can never hold fails.
The supervisor checks the same while nodes wait, since nodes leave clusters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray

from ray_nodes.engine.task import NodePlan
from ray_nodes.engine.types import NodeFailure, RunSubmission
from ray_nodes.params import node_params, run_parameters
from ray_nodes.registry import default_registry
from ray_nodes.wiring import match_inputs
from raypipe.v1 import pipeline_spec_pb2

RESOURCE_ERROR = "raypipe.ResourceUnavailable"
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MULTIPLIER = 2.0


@dataclass(frozen=True)
class CompiledNode:
    """One node, ready to submit."""

    node_id: str
    upstream: tuple[str, ...]
    inputs: tuple[str, ...]
    task_plan: NodePlan
    ray_options: dict[str, Any]
    notes: tuple[str, ...] = ()
    timeout_s: float = 0.0
    fail_fast: bool = True
    impossible_failure: NodeFailure | None = None
    #: The resources one node of the cluster must hold for it: CPU, GPU, memory (bytes),
    #: ``accelerator_type:X``.
    demand: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledRun:
    """The run's nodes in topological order, and those no node of the cluster can run."""

    nodes: tuple[CompiledNode, ...]
    impossible: dict[str, NodeFailure] = field(default_factory=dict)
    fail_fast: bool = True


def cluster_capacity() -> list[dict[str, float]]:
    """The total resources of every alive node of the cluster."""
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


@dataclass(frozen=True)
class Autoscaling:
    """What a cluster's autoscaler tells Ray's autoscaler state (in the GCS).

    Attributes:
        node_types: The resources of each node type it may start, where it reports its
            cluster config (``ReportClusterConfig``); None where it reports none, as Ray's
            own autoscaler (v2, Ray 2.60) does not: then only its verdicts below are known.
        infeasible: The resource requests it has found that no node type it can start holds
            (``infeasible_resource_requests`` of its reported state), as resource bundles.
    """

    node_types: list[dict[str, float]] | None = None
    infeasible: list[dict[str, float]] = field(default_factory=list)

    def refuses(self, demand: Mapping[str, float]) -> bool:
        """Whether the autoscaler says it can start no node that holds ``demand``."""
        if any(_same_request(demand, bundle) for bundle in self.infeasible):
            return True
        return (
            self.node_types is not None and missing_resources(demand, self.node_types) is not None
        )

    def may_add(self, demand: Mapping[str, float], *, known_only: bool = False) -> bool:
        """Whether the autoscaler may add a node that holds ``demand``: one of its node types
        does, or (``known_only`` False) it reports no node types and has not refused it."""
        if self.refuses(demand):
            return False
        return self.node_types is not None or not known_only


def _same_request(demand: Mapping[str, float], bundle: Mapping[str, float]) -> bool:
    """Whether a task asking for ``demand`` makes the resource request ``bundle`` (Ray leaves
    out zero amounts and keeps four decimals)."""
    asked = {k: v for k, v in demand.items() if v > 0}
    return asked.keys() == {k for k, v in bundle.items() if v > 0} and all(
        math.isclose(v, bundle[k], rel_tol=1e-6, abs_tol=1e-4) for k, v in asked.items()
    )


def autoscaling() -> Autoscaling | None:
    """The cluster's autoscaler as Ray's autoscaler state shows it; None when the cluster has
    none (neither a cluster config nor an autoscaler's state was ever reported)."""
    from ray._private.state import state
    from ray._private.worker import global_worker
    from ray.core.generated import autoscaler_pb2

    try:
        config = state.get_cluster_config()
        # The request behind `ray status`, on this process's own connection to the GCS.
        status = global_worker.gcs_client.get_cluster_status(timeout_s=10)  # type: ignore[attr-defined]
        reply = autoscaler_pb2.GetClusterStatusReply.FromString(status)  # type: ignore[attr-defined]
    except Exception:  # an older GCS, or none to ask: no autoscaler that we can see
        return None
    node_types = None
    if config is not None and config.node_group_configs:
        node_types = [
            {key: float(value) for key, value in group.resources.items()}
            for group in config.node_group_configs
            if group.max_count != 0
        ]
    reported = reply.autoscaling_state
    if node_types is None and not reported.autoscaler_state_version:
        return None
    infeasible = [
        {key: float(value) for key, value in request.resources_bundle.items()}
        for request in reported.infeasible_resource_requests
    ]
    return Autoscaling(node_types, infeasible)


def _seconds(duration: Any) -> float:
    return duration.seconds + duration.nanos / 1e9


def describe_capacity(capacity: list[dict[str, float]]) -> str:
    cpus = max((n.get("CPU", 0.0) for n in capacity), default=0.0)
    gpus = max((n.get("GPU", 0.0) for n in capacity), default=0.0)
    return f"largest node: {cpus:g} CPUs, {gpus:g} GPUs; {len(capacity)} node(s)"


def missing_resources(demand: Mapping[str, float], capacity: list[dict[str, float]]) -> str | None:
    """Why no single node can ever hold ``demand``, or None if one can."""
    if any(all(node.get(k, 0.0) >= v for k, v in demand.items() if v > 0) for node in capacity):
        return None
    for key, value in demand.items():
        if value > 0 and not any(node.get(key, 0.0) >= value for node in capacity):
            best = max((node.get(key, 0.0) for node in capacity), default=0.0)
            if key == "GPU":
                return f"{value:g} GPU(s) but no node of the cluster has {'any GPU' if best == 0 else f'more than {best:g}'}"
            if key == "memory":
                return f"{value / 2**30:.2f} GiB of memory but the largest node has {best / 2**30:.2f} GiB"
            if key.startswith("accelerator_type:"):
                return f"accelerator type {key.split(':', 1)[1]!r} but no node has one"
            return f"{value:g} {key} but the largest node has {best:g}"
    return "a combination of resources that no single node has"


def compile_run(sub: RunSubmission, *, namespace: str = "raypipe") -> CompiledRun:
    """Compile a submission against the current cluster."""
    spec = pipeline_spec_pb2.PipelineSpec.FromString(sub.spec)
    registry = default_registry()
    inputs = match_inputs(spec, registry)
    parameters = run_parameters(spec, sub.parameters)
    fail_fast = spec.failure_policy != pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT
    capacity = cluster_capacity()
    scaler = autoscaling()
    verdicts: dict[tuple[tuple[tuple[str, float], ...], bool], str | None] = {}

    def missing(demand: Mapping[str, float], known_only: bool = False) -> str | None:
        """Why no node can hold ``demand``: none of the cluster's, and the autoscaler may add
        none (``known_only``: none of its known node types). Such a node waits (bounded)."""
        key = (tuple(sorted(demand.items())), known_only)
        if key not in verdicts:  # most nodes of a big graph ask the same: judge each once
            why = missing_resources(demand, capacity)
            if why and scaler is not None and scaler.may_add(demand, known_only=known_only):
                why = None
            verdicts[key] = why
        return verdicts[key]

    by_id = {n.id: n for n in spec.nodes}
    order = _order(spec)
    compiled: list[CompiledNode] = []
    impossible: dict[str, NodeFailure] = {}
    for node_id in order:
        node = by_id[node_id]
        cls = registry.get(node.type)
        params = node_params(
            node, parameters=parameters, run_name=sub.run_name, scheduled_time=sub.scheduled_time
        )
        res = node.resources
        defaults_res = cls.default_resources
        num_cpus = res.num_cpus or defaults_res.num_cpus
        num_gpus = res.num_gpus or defaults_res.num_gpus
        memory = res.memory_bytes or defaults_res.memory_bytes
        notes: list[str] = []
        demand: dict[str, float] = {"CPU": num_cpus, "GPU": num_gpus, "memory": float(memory)}
        if res.accelerator_type:
            demand[f"accelerator_type:{res.accelerator_type}"] = 0.001
        failure = None
        preferred = num_gpus > 0 and res.gpu_policy == pipeline_spec_pb2.GPU_POLICY_PREFERRED
        # A preferred GPU is waited for only where a known node type has it: an autoscaler
        # that lists no node types could make the node wait out the bound for nothing.
        why = missing(demand, known_only=preferred)
        if why and preferred:
            cpu_only = {
                k: v
                for k, v in demand.items()
                if k != "GPU" and not k.startswith("accelerator_type:")
            }
            if missing(cpu_only) is None:
                notes.append(
                    f"ran on CPU: no node of the cluster has the {num_gpus:g} GPU(s) asked for "
                    "(gpu_policy GPU_POLICY_PREFERRED)"
                )
                num_gpus, why = 0.0, None
                demand = cpu_only
        if why:
            refused = scaler is not None and scaler.refuses(demand)
            failure = NodeFailure(
                node_id,
                RESOURCE_ERROR,
                f"node {node_id!r} asks for {why} ({describe_capacity(capacity)})"
                + (": the cluster's autoscaler can add no node that holds it" if refused else ""),
            )
            impossible[node_id] = failure
        retry = node.retry
        ray_options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            # Ray retries system failures (a lost worker or node) itself; application errors
            # are retried inside the task, with backoff.
            "max_retries": max(0, retry.max_retries),
            "retry_exceptions": False,
        }
        if memory:
            ray_options["memory"] = memory
        if res.accelerator_type and num_gpus:
            ray_options["accelerator_type"] = res.accelerator_type
        plan = NodePlan(
            run_id=sub.run_id,
            run_name=sub.run_name,
            pipeline_id=sub.pipeline_id,
            node_id=node_id,
            type_name=node.type,
            params=params,
            output_kind=cls.output.value,
            num_cpus=num_cpus,
            num_inputs=len(inputs[node_id]),
            artifact_root=sub.artifact_root,
            data_roots=tuple(sub.data_roots),
            namespace=namespace,
            max_retries=max(0, retry.max_retries),
            initial_backoff=_seconds(retry.initial_backoff)
            if retry.HasField("initial_backoff")
            else DEFAULT_BACKOFF_S,
            backoff_multiplier=retry.backoff_multiplier or DEFAULT_MULTIPLIER,
            max_backoff=_seconds(retry.max_backoff) if retry.HasField("max_backoff") else 0.0,
            retry_application_errors=retry.retry_application_errors or bool(retry.retry_on),
            retry_on=tuple(retry.retry_on),
            notes=tuple(notes),
            persist_output=sub.keep_outputs == "always" or node.cache.enabled,
            log_max_bytes=sub.log_max_bytes,
        )
        compiled.append(
            CompiledNode(
                node_id=node_id,
                upstream=tuple(dict.fromkeys(node.depends_on)),
                inputs=inputs[node_id],
                task_plan=plan,
                ray_options=ray_options,
                notes=tuple(notes),
                timeout_s=_seconds(node.timeout) if node.HasField("timeout") else 0.0,
                fail_fast=fail_fast,
                impossible_failure=failure,
                demand={k: v for k, v in demand.items() if v > 0},
            )
        )
    return CompiledRun(nodes=tuple(compiled), impossible=impossible, fail_fast=fail_fast)


def _order(spec: pipeline_spec_pb2.PipelineSpec) -> tuple[str, ...]:
    from ray_nodes.graph import dependency_map, nodes_from_spec, topological_order

    return topological_order(dependency_map(nodes_from_spec(spec)))
