"""Conversions between table rows and the API's protobuf messages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from control_plane.storage.repository import NewRun
from raypipe.v1 import pipeline_pb2, run_pb2

__all__ = [
    "from_micros",
    "new_run_rows",
    "parameters_to_json",
    "pipeline_from_row",
    "run_from_row",
    "to_micros",
    "version_from_row",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Run.nodes is field 9 of Run, length-delimited (wire type 2): its tag byte is 9 << 3 | 2.
_RUN_NODES_TAG = bytes([9 << 3 | 2])


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: exact, unlike ``datetime.timestamp()``'s float."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC datetime of :func:`to_micros`."""
    return _EPOCH + timedelta(microseconds=value)


def _set_time(field: timestamp_pb2.Timestamp, value: datetime | None) -> None:
    if value is not None:
        field.FromDatetime(value)


def pipeline_name(pipeline_id: str) -> str:
    """``pipelines/{id}``."""
    return f"pipelines/{pipeline_id}"


def version_name(pipeline_id: str, version_number: int) -> str:
    """``pipelines/{id}/versions/{n}``."""
    return f"pipelines/{pipeline_id}/versions/{version_number}"


def pipeline_from_row(row: Any) -> pipeline_pb2.Pipeline:
    """A Pipeline from a row of ``pipelines`` (every column)."""
    default = row.default_version_number
    pipeline = pipeline_pb2.Pipeline(
        name=pipeline_name(row.id),
        display_name=row.display_name,
        description=row.description,
        default_version=version_name(row.id, default) if default is not None else "",
        labels=row.labels,
        latest_version_number=row.latest_version_number,
        etag=_etag(row.id, row.create_time, row.revision),
    )
    pipeline.create_time.FromDatetime(row.create_time)
    pipeline.update_time.FromDatetime(row.update_time)
    return pipeline


def _etag(pipeline_id: str, create_time: datetime, revision: int) -> str:
    # The revision alone would repeat when a pipeline is deleted and created again under the
    # same id; mixing in the creation time makes a stale etag never match the new pipeline.
    key = f"{pipeline_id}|{to_micros(create_time)}|{revision}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def version_from_row(row: Any, *, with_spec: bool) -> pipeline_pb2.PipelineVersion:
    """A PipelineVersion from a row of ``pipeline_versions``; ``spec`` only if ``with_spec``."""
    version = pipeline_pb2.PipelineVersion(
        name=version_name(row.pipeline_id, row.version_number),
        version_number=row.version_number,
        spec_digest=row.spec_digest,
        description=row.description,
        creator=getattr(row, "creator", ""),
    )
    if with_spec:
        version.spec.MergeFromString(row.spec)
    version.create_time.FromDatetime(row.create_time)
    return version


def run_from_row(row: Any, node_blobs: Iterable[bytes]) -> run_pb2.Run:
    """A Run from a row of ``runs`` and its nodes' serialized NodeExecutions in spec order."""
    run = run_pb2.Run(
        name=f"runs/{row.id}",
        pipeline=pipeline_name(row.pipeline_id),
        pipeline_version=version_name(row.pipeline_id, row.version_number),
        state=row.state,
        display_name=row.display_name,
        labels=row.labels,
        schedule=row.schedule or "",
        retry_of=f"runs/{row.retry_of}" if row.retry_of else "",
        creator=getattr(row, "creator", None) or "",
    )
    for key, value in row.parameters.items():
        json_format.ParseDict(value, run.parameters[key])
    _set_time(run.create_time, row.create_time)
    _set_time(run.start_time, row.start_time)
    _set_time(run.end_time, row.end_time)
    _set_time(run.update_time, row.update_time)
    _set_time(run.scheduled_time, row.scheduled_time)
    if row.error is not None:
        run.error.MergeFromString(row.error)
    tracking = getattr(row, "tracking", None)  # absent from the rows create_run builds
    if tracking is not None:
        run.tracking.MergeFromString(tracking)
    # A run may have thousands of nodes and is re-read after every change the engine records.
    # Framing the stored records as repeated field 9 lets protobuf's C parser build them all
    # in one call instead of one Python-level parse and copy per node.
    run.MergeFromString(b"".join(_RUN_NODES_TAG + _varint(len(b)) + b for b in node_blobs))
    return run


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parameters_to_json(parameters: Mapping[str, object]) -> dict[str, Any]:
    """Run parameters as plain JSON values, accepting Python values or ``Value`` messages.

    Raises:
        TypeError, ValueError: A value that ``google.protobuf.Value`` cannot hold.
    """
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, struct_pb2.Value):
            out[key] = json_format.MessageToDict(value)
        else:
            # Round-trip through Value: the stored JSON is exactly what the API can return
            # (ints become doubles, tuples lists), and a non-JSON value fails here, not later.
            message = struct_pb2.Value()
            struct = struct_pb2.Struct()
            struct.update({key: value})  # type: ignore[dict-item]
            message.CopyFrom(struct.fields[key])
            out[key] = json_format.MessageToDict(message)
    return out


def new_run_rows(
    new: NewRun, schedule: str | None, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``runs`` row and the ``node_executions`` rows of a run being created."""
    pending_node = run_pb2.NodeExecution.STATE_PENDING
    row = {
        "id": new.run_id,
        "pipeline_id": new.pipeline_id,
        "version_number": new.version_number,
        "state": run_pb2.Run.STATE_PENDING,
        "display_name": new.display_name,
        "parameters": parameters_to_json(new.parameters),
        "labels": dict(new.labels),
        "request_id": new.request_id or None,
        "schedule": schedule,
        "scheduled_time": new.scheduled_time if schedule else None,
        "retry_of": new.retry_of.removeprefix("runs/"),
        "error": None,
        "create_time": now,
        "start_time": None,
        "end_time": None,
        "update_time": now,
        "engine_cursor": 0,
        "next_event_sequence": 1,
        "creator": new.creator,
        "recorder": new.recorder.holder if new.recorder else None,
        "recorder_until": new.recorder.until if new.recorder else None,
    }
    nodes = [
        {
            "run_id": new.run_id,
            "position": position,
            "node_id": node_id,
            "state": pending_node,
            "data": run_pb2.NodeExecution(
                node_id=node_id,
                state=pending_node,
                attempt=0,
                cache_key=new.cache_keys.get(node_id, ""),
            ).SerializeToString(),
            "cache_key": new.cache_keys.get(node_id) or None,
        }
        for position, node_id in enumerate(new.node_ids)
    ]
    return row, nodes
