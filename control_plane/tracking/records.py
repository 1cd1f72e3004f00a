"""What a raypipe run amounts to in MLflow: pure functions from runs, specs and engine events
to experiment names, tags, parameters, metrics and model-logging jobs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from control_plane.runs.events import artifact_ref
from control_plane.runs.templates import template_values
from ray_nodes.engine import ArtifactRef, EngineEvent
from ray_nodes.params import node_params, run_parameters
from ray_nodes.registry import NodeRegistry
from ray_nodes.templating import TemplateError
from ray_nodes.wiring import match_inputs
from raypipe.v1 import node_type_pb2, pipeline_spec_pb2, run_pb2

__all__ = [
    "MAX_PARAM_VALUE",
    "Metric",
    "ModelJob",
    "experiment_name",
    "metric_key",
    "metrics_of",
    "mlflow_status",
    "model_evaluators",
    "model_jobs",
    "run_params",
    "run_tags",
    "run_url",
]

#: MLflow's limit on a parameter's value; longer values are cut with a trailing ``...``.
MAX_PARAM_VALUE = 6000
#: The MLflow run status each terminal raypipe state is mirrored as.
_STATUS = {
    run_pb2.Run.STATE_SUCCEEDED: "FINISHED",
    run_pb2.Run.STATE_FAILED: "FAILED",
    run_pb2.Run.STATE_CANCELLED: "KILLED",
}
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
_SPLIT = node_type_pb2.ARTIFACT_KIND_SPLIT


@dataclass(frozen=True)
class Metric:
    """One metric value: ``{node_id}.{name}`` at a step (an epoch for training curves).

    ``final`` marks a node's final value (reported with its terminal state), as opposed to a
    point of a training curve.
    """

    key: str
    value: float
    timestamp_ms: int
    step: int = 0
    node_id: str = ""
    final: bool = True


@dataclass(frozen=True)
class ModelJob:
    """A saved model to log into the run's MLflow run, from a Ray task.

    Attributes:
        node_id: The model_saver node that saved it (also the logged model's name).
        model_dir: The directory ``ray_nodes.nodes.model_saver.load_model`` reads.
        example: The stored split whose test rows make the input example, if any.
        register_as: The registered model name, from the node's ``register_as`` param.
    """

    node_id: str
    model_dir: str
    example: ArtifactRef | None
    register_as: str


def experiment_name(run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> str:
    """The experiment a run goes to: the spec's ``tracking.experiment``, else the pipeline id."""
    return spec.tracking.experiment or run.pipeline.removeprefix("pipelines/")


def mlflow_status(state: int) -> str:
    """FINISHED, FAILED or KILLED for a terminal raypipe run state."""
    return _STATUS.get(state, "FAILED")  # type: ignore[call-overload]


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI for a server URI, else its ``runs:/`` URI."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"runs:/{run_id}"


def run_tags(run: run_pb2.Run) -> dict[str, str]:
    """The raypipe facts that identify the run: name, pipeline version, schedule, creator,
    labels."""
    tags = {
        "raypipe.run": run.name,
        "raypipe.run_display_name": run.display_name,
        "raypipe.pipeline": run.pipeline,
        "raypipe.pipeline_version": run.pipeline_version,
    }
    if run.schedule:
        tags["raypipe.schedule"] = run.schedule
    if run.HasField("scheduled_time"):
        tags["raypipe.scheduled_time"] = run.scheduled_time.ToJsonString()
    if run.retry_of:
        tags["raypipe.retry_of"] = run.retry_of
    if run.creator:
        tags["raypipe.creator"] = run.creator
    for key, value in run.labels.items():
        tags[f"raypipe.label.{key}"] = value
    return tags


def _plain(value: Any) -> Any:
    """Whole floats as ints (protobuf's Value keeps every number as a double)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _param_value(value: Any) -> str:
    value = _plain(value)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}", inner)
    else:
        yield prefix, _param_value(value)


def _parameters(run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, Any]:
    """The run's effective parameters: the spec's defaults overlaid with the run's values."""
    values = {k: json_format.MessageToDict(v) for k, v in run.parameters.items()}
    try:
        return run_parameters(spec, values)
    except TemplateError:  # not for a run the server accepted; record what there is
        return {**json_format.MessageToDict(spec).get("parameters", {}), **values}


def _node_params(
    run: run_pb2.Run, node: pipeline_spec_pb2.Node, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """A node's params as its ``run`` receives them (:func:`ray_nodes.params.node_params`)."""
    run_name, scheduled_time = template_values(run)
    try:
        return node_params(
            node, parameters=parameters, run_name=run_name, scheduled_time=scheduled_time
        )
    except TemplateError:
        return json_format.MessageToDict(node.params)


def run_params(run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, str]:
    """The run's parameters (``parameters.NAME``, the spec's defaults overlaid with the run's
    values) and every node's type and params with templates resolved, flattened with the node
    id as prefix (``train.hyperparameters.max_depth``)."""
    parameters = _parameters(run, spec)
    params = {f"parameters.{k}": _param_value(v) for k, v in parameters.items()}
    for node in spec.nodes:
        params[f"{node.id}.type"] = node.type
        params.update(_flatten(node.id, _node_params(run, node, parameters)))
    return params


def metric_key(node_id: str, name: str) -> str:
    """``{node_id}.{name}`` with characters MLflow refuses in keys replaced by ``_``."""
    return _BAD_KEY_CHARS.sub("_", f"{node_id}.{name}")


def metrics_of(
    events: Sequence[EngineEvent], steps: dict[tuple[str, str], int] | None = None
) -> list[Metric]:
    """The metrics a batch of engine events reports.

    A progress event's values are a training curve, ``{node_id}.progress.{name}``: their step
    is the event's ``epoch`` value when it has one, else a counter per node and metric (kept
    in ``steps`` across batches). A node's final values (with its terminal state change) are
    ``{node_id}.{name}`` at step 0.
    """
    steps = {} if steps is None else steps
    out: list[Metric] = []
    for ev in events:
        if ev.kind == "run" or not ev.metrics:
            continue
        ms = int(ev.time * 1000)
        if ev.kind == "progress":
            epoch = ev.metrics.get("epoch")
            for name, value in ev.metrics.items():
                if name == "epoch" or not math.isfinite(value):
                    continue
                counter = (ev.node_id, name)
                step = int(epoch) if epoch is not None else steps.get(counter, 0)
                steps[counter] = step + 1
                key = metric_key(ev.node_id, f"progress.{name}")
                out.append(Metric(key, value, ms, step, ev.node_id, final=False))
        else:
            out.extend(
                Metric(metric_key(ev.node_id, name), value, ms, node_id=ev.node_id)
                for name, value in ev.metrics.items()
                if math.isfinite(value)
            )
    return out


def _upstream(spec: pipeline_spec_pb2.PipelineSpec, node_id: str) -> Iterator[str]:
    """The node's ancestors, nearest first (breadth first)."""
    deps = {n.id: list(n.depends_on) for n in spec.nodes}
    seen = {node_id}
    frontier = list(deps.get(node_id, ()))
    while frontier:
        following: list[str] = []
        for nid in frontier:
            if nid in seen:
                continue
            seen.add(nid)
            yield nid
            following.extend(deps.get(nid, ()))
        frontier = following


def _example_split(
    spec: pipeline_spec_pb2.PipelineSpec, run: run_pb2.Run, node_id: str
) -> ArtifactRef | None:
    records = {n.node_id: n for n in run.nodes}
    for upstream in _upstream(spec, node_id):
        record = records.get(upstream)
        if record is None:
            continue
        for artifact in record.artifacts:
            if artifact.kind == _SPLIT and artifact.name == "output":
                return artifact_ref(artifact)
    return None


def model_jobs(
    run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec, events: Sequence[EngineEvent]
) -> list[ModelJob]:
    """One job per model_saver node that succeeded in ``events``."""
    savers = {n.id: n for n in spec.nodes if n.type == "model_saver"}
    jobs = []
    for ev in events:
        if ev.kind != "node" or ev.node_id not in savers or ev.state != "SUCCEEDED":
            continue
        model = next((a for a in ev.artifacts if a.name == "model"), None)
        if model is None:
            continue
        params = _node_params(run, savers[ev.node_id], _parameters(run, spec))
        jobs.append(
            ModelJob(
                node_id=ev.node_id,
                model_dir=model.uri.rsplit("/", 1)[0],
                example=_example_split(spec, run, ev.node_id),
                register_as=str(params.get("register_as") or ""),
            )
        )
    return jobs


def model_evaluators(
    spec: pipeline_spec_pb2.PipelineSpec, registry: NodeRegistry
) -> dict[str, tuple[str, ...]]:
    """model_saver node -> the model_evaluator nodes that evaluate the model it saves (those
    whose model input comes from the same node as the saver's), as the engine wires inputs.

    The logged model of a saver carries these evaluators' scores. A spec that cannot be wired
    (it was valid when stored, so only after a node type went away) links nothing.
    """
    if not any(n.type == "model_saver" for n in spec.nodes):
        return {}  # nothing to link; spares the wiring on the run-start path
    try:
        inputs = match_inputs(spec, registry)
    except ValueError:  # CycleError, WiringError and unknown types are ValueErrors
        return {}
    types = {n.id: n.type for n in spec.nodes}
    evaluators = [n for n, t in types.items() if t == "model_evaluator"]
    links: dict[str, tuple[str, ...]] = {}
    for saver, kind in types.items():
        if kind != "model_saver" or not inputs.get(saver):
            continue
        source = inputs[saver][0]
        links[saver] = tuple(e for e in evaluators if source in inputs.get(e, ()))
    return links
