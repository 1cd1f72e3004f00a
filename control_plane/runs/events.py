"""What the engine reports, as the run's durable record: the one home of the conversions
between the engine's values (``ray_nodes.engine``: events, artifact references) and the run's
messages (``raypipe.v1``), and the folding of a batch of events into one stored change.

Pure functions and a view, no I/O: the supervisor, the cache lookup and the tracker use them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from google.protobuf import json_format, struct_pb2

from control_plane.storage.repository import RunChange
from ray_nodes.engine import ArtifactRef, EngineEvent
from raypipe.v1 import node_type_pb2, run_pb2

log = logging.getLogger("raypipe.runs")

RunState = run_pb2.Run.State
NodeState = run_pb2.NodeExecution.State
TERMINAL_RUN_STATES = frozenset(
    {RunState.STATE_SUCCEEDED, RunState.STATE_FAILED, RunState.STATE_CANCELLED}
)
TERMINAL_NODE_STATES = frozenset(
    {
        NodeState.STATE_SUCCEEDED,
        NodeState.STATE_FAILED,
        NodeState.STATE_SKIPPED,
        NodeState.STATE_CANCELLED,
        NodeState.STATE_CACHED,
    }
)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _ts(message_field, ts: float) -> None:  # type: ignore[no-untyped-def]
    if ts:
        message_field.FromDatetime(utc(ts))


def artifact_message(ref: ArtifactRef) -> run_pb2.Artifact:
    metadata = struct_pb2.Struct()
    metadata.update(ref.metadata)
    kind_name = f"ARTIFACT_KIND_{ref.kind.upper()}"
    known = set(node_type_pb2.ArtifactKind.keys())  # an EnumTypeWrapper, not a dict
    kind = kind_name if kind_name in known else "ARTIFACT_KIND_UNSPECIFIED"
    return run_pb2.Artifact(
        name=ref.name,
        kind=kind,
        uri=ref.uri,
        size_bytes=ref.size_bytes,
        sha256=ref.sha256,
        metadata=metadata,
    )


def artifact_ref(message: run_pb2.Artifact) -> ArtifactRef:
    kind = node_type_pb2.ArtifactKind.Name(message.kind).removeprefix("ARTIFACT_KIND_").lower()
    return ArtifactRef(
        name=message.name,
        kind=kind,
        uri=message.uri,
        size_bytes=message.size_bytes,
        sha256=message.sha256,
        metadata=json_format.MessageToDict(message.metadata),
    )


def fold_events(run: run_pb2.Run, events: Sequence[EngineEvent]) -> RunChange:
    """The durable change that a batch of one run's engine events amounts to."""
    nodes = {n.node_id: n for n in run.nodes}
    touched: dict[str, run_pb2.NodeExecution] = {}
    out: list[run_pb2.RunEvent] = []
    state: int | None = None
    start_time = end_time = None
    error = None
    run_state: int = run.state
    for ev in events:
        event = run_pb2.RunEvent(message=ev.message)
        event.run_state = run_state  # type: ignore[assignment]  # the .pyi types enums as classes
        _ts(event.time, ev.time)
        if ev.kind == "run":
            new_state = RunState.Value(f"STATE_{ev.state}")
            if run_state == RunState.STATE_CANCELLING and new_state == RunState.STATE_RUNNING:
                continue  # a cancel is already under way; don't step back
            run_state = state = new_state
            if new_state == RunState.STATE_RUNNING and not run.HasField("start_time"):
                start_time = utc(ev.start_time or ev.time)
            if new_state in TERMINAL_RUN_STATES:
                end_time = utc(ev.end_time or ev.time)
                if ev.error is not None:
                    error = run_pb2.ExecutionError(
                        node_id=ev.error.node_id,
                        type=ev.error.type,
                        message=ev.error.message,
                        traceback=ev.error.traceback,
                        log_tail=ev.error.log_tail,
                    )
            event.type = run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED
            event.run_state = run_state  # type: ignore[assignment]
        else:
            if ev.node_id not in nodes:
                log.warning("run %s: event for unknown node %r ignored", run.name, ev.node_id)
                continue
            node = touched.get(ev.node_id)
            if node is None:
                node = run_pb2.NodeExecution()
                node.CopyFrom(nodes[ev.node_id])
                touched[ev.node_id] = node
            event.node_id = ev.node_id
            node.metrics.update(ev.metrics)
            event.metrics.update(ev.metrics)
            if ev.kind == "progress":
                event.type = run_pb2.RunEvent.TYPE_NODE_PROGRESS
                event.node_state = node.state
                if ev.artifacts:  # an output stored after the node ended (for RetryRun)
                    _add_artifacts(node, ev.artifacts)
            else:
                _apply_node_event(node, ev)
                event.type = run_pb2.RunEvent.TYPE_NODE_STATE_CHANGED
                event.node_state = node.state
                if not event.message:
                    event.message = f"node {ev.node_id} {ev.state.lower()}"
        out.append(event)
    return RunChange(
        state=state,
        start_time=start_time,
        end_time=end_time,
        error=error,
        node_updates=list(touched.values()),
        events=out,
        engine_cursor=events[-1].seq if events else None,
    )


def _add_artifacts(node: run_pb2.NodeExecution, refs: Sequence[ArtifactRef]) -> None:
    """Add artifacts to a node's record, replacing any of the same name."""
    names = {r.name for r in refs}
    kept = [a for a in node.artifacts if a.name not in names]
    del node.artifacts[:]
    node.artifacts.extend(kept)
    node.artifacts.extend(artifact_message(r) for r in refs)


def _apply_node_event(node: run_pb2.NodeExecution, ev: EngineEvent) -> None:
    node.state = NodeState.Value(f"STATE_{ev.state}")  # type: ignore[assignment]
    if ev.attempt:
        node.attempt = ev.attempt
    if ev.start_time:
        _ts(node.start_time, ev.start_time)
    elif node.state == NodeState.STATE_RUNNING:
        _ts(node.start_time, ev.time)
    if node.state in TERMINAL_NODE_STATES:
        _ts(node.end_time, ev.end_time or ev.time)
    if ev.error is not None:
        node.error.CopyFrom(
            run_pb2.ExecutionError(
                node_id=ev.error.node_id or ev.node_id,
                type=ev.error.type,
                message=ev.error.message,
                traceback=ev.error.traceback,
                log_tail=ev.error.log_tail,
            )
        )
    if ev.artifacts:
        del node.artifacts[:]
        node.artifacts.extend(artifact_message(a) for a in ev.artifacts)
    for note in ev.notes:
        if note not in node.notes:
            node.notes.append(note)
    if ev.ray_task_id:
        node.ray_task_id = ev.ray_task_id
    if ev.ray_node_id:
        node.ray_node_id = ev.ray_node_id
        node.ray_node_address = ev.ray_node_address
    if ev.cached_from:
        node.cached_from = f"runs/{ev.cached_from}"


def struct_of(values: Mapping[str, struct_pb2.Value]) -> struct_pb2.Struct:
    """A map<string, Value> field as a Struct, to convert it to plain Python in one call."""
    struct = struct_pb2.Struct()
    for key, value in values.items():
        struct.fields[key].CopyFrom(value)
    return struct


class RunView:
    """A whole run kept up to date from partial reads: the header and the few nodes that a
    batch of events touched. Reading a 1,000-node run whole for every batch of events would
    cost more than recording the events."""

    _HEADER_FIELDS = tuple(f.name for f in run_pb2.Run.DESCRIPTOR.fields if f.name != "nodes")

    def __init__(self, run: run_pb2.Run) -> None:
        self.run = run
        self._index = {node.node_id: i for i, node in enumerate(run.nodes)}

    def update(self, partial: run_pb2.Run) -> run_pb2.Run:
        """Take the header and the nodes of ``partial`` (the same run, some of its nodes)."""
        header = run_pb2.Run()
        header.CopyFrom(partial)
        del header.nodes[:]
        for name in self._HEADER_FIELDS:
            self.run.ClearField(name)
        self.run.MergeFrom(header)
        for node in partial.nodes:
            index = self._index.get(node.node_id)
            if index is None:  # not expected: a run's nodes are fixed at creation
                self._index[node.node_id] = len(self.run.nodes)
                self.run.nodes.add().CopyFrom(node)
            else:
                self.run.nodes[index].CopyFrom(node)
        return self.run


def touched_nodes(node_ids: Iterable[str]) -> set[str]:
    """The non-empty node ids among ``node_ids`` (events of the run itself have none)."""
    return {node_id for node_id in node_ids if node_id}
