"""The artifact store: node outputs are written under the artifact root so that a later run
can reuse them instead of executing the node again: RetryRun (the outputs of a run that
failed or was cancelled, written by the supervisor then) and the cross-run cache (outputs of
cache-enabled nodes, written as they end). See ``RunSubmission.keep_outputs``.

Layout: ``{root}/runs/{run_id}/nodes/{node_id}/output.{ext}``. The root is a local directory
or any fsspec URL (``s3://``, ``gs://``, ``memory://``). An output whose JSON is at most
:data:`INLINE_MAX_BYTES` (``None`` from a node that only orders others, a few numbers) is not
written at all: its URI is an RFC 2397 ``data:`` URL holding the value, which fsspec reads
like any other, so the run record carries it and small nodes cost no file. The format follows the value:
pandas DataFrames as Parquet, numpy arrays as ``.npy`` (no pickle), JSON-able values as JSON,
anything else (splits, fitted models) with cloudpickle. Pickles are only ever read back from
these server-chosen paths and only after their SHA-256 matches the one recorded when they
were written, never from a path a client named.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import urllib.parse
from typing import Any

import cloudpickle
import fsspec
import numpy as np
import pandas as pd

from ray_nodes.engine.types import ArtifactRef
from ray_nodes.errors import RayNodesError

_JSON_TYPES = (type(None), bool, int, float, str)
#: Outputs whose JSON is at most this long are kept in their URI (``data:``) instead of a file.
INLINE_MAX_BYTES = 256


class ArtifactIntegrityError(RayNodesError, RuntimeError):
    """A stored artifact is missing or its bytes no longer match the recorded SHA-256."""


def output_uri(root: str, run_id: str, node_id: str, ext: str) -> str:
    return f"{root.rstrip('/')}/runs/{run_id}/nodes/{node_id}/output.{ext}"


def _jsonable(value: Any, depth: int = 0) -> bool:
    if depth > 32:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, _JSON_TYPES):
        return True
    if isinstance(value, list | tuple):
        return all(_jsonable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v, depth + 1) for k, v in value.items())
    return False


def _encode(value: Any) -> tuple[bytes, str, dict[str, Any]]:
    """(bytes, extension, metadata) of a node's output."""
    if isinstance(value, pd.DataFrame):
        buffer = io.BytesIO()
        frame = (
            value if all(isinstance(c, str) for c in value.columns) else value.rename(columns=str)
        )
        frame.to_parquet(buffer, engine="pyarrow")
        meta = {"format": "parquet", "rows": len(value), "columns": value.shape[1]}
        return buffer.getvalue(), "parquet", meta
    if isinstance(value, np.ndarray) and value.dtype != object:
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue(), "npy", {"format": "npy", "shape": list(value.shape)}
    if _jsonable(value):
        return json.dumps(value).encode(), "json", {"format": "json"}
    return cloudpickle.dumps(value), "pkl", {"format": "cloudpickle", "type": type(value).__name__}


def _write(uri: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)


def _describe(data: bytes, uri: str, kind: str, meta: dict[str, Any]) -> ArtifactRef:
    return ArtifactRef(
        name="output",
        kind=kind,
        uri=uri,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=meta,
    )


def _inline_uri(data: bytes) -> str:
    return "data:application/json," + urllib.parse.quote(data.decode(), safe="")


def inline_output(value: Any, *, kind: str) -> ArtifactRef | None:
    """The output as a ``data:`` URI when it is a few bytes of JSON, else None; cheap for
    large values, which it does not encode."""
    small = (
        value is None
        or isinstance(value, bool | int | float)
        or (isinstance(value, str | list | tuple | dict) and len(value) <= INLINE_MAX_BYTES // 4)
    )
    if not small or not _jsonable(value):
        return None
    data = json.dumps(value).encode()
    if len(data) > INLINE_MAX_BYTES:
        return None
    return _describe(data, _inline_uri(data), kind, {"format": "json"})


def store_output(value: Any, *, root: str, run_id: str, node_id: str, kind: str) -> ArtifactRef:
    """Write a node's output to the store and describe it."""
    inline = inline_output(value, kind=kind)
    if inline is not None:
        return inline
    data, ext, meta = _encode(value)
    uri = output_uri(root, run_id, node_id, ext)
    _write(uri, data)
    return _describe(data, uri, kind, meta)


def store_file(
    content: bytes | str, *, root: str, run_id: str, node_id: str, name: str, fmt: str, kind: str
) -> ArtifactRef:
    """Write an extra file a node produced (``name``, such as ``feature_importances``) beside
    its output, and describe it."""
    if not name.replace("_", "").replace("-", "").isalnum() or not fmt.isalnum():
        raise ValueError(f"artifact name {name!r} and format {fmt!r} must be plain words")
    data = content.encode() if isinstance(content, str) else content
    uri = f"{root.rstrip('/')}/runs/{run_id}/nodes/{node_id}/{name}.{fmt}"
    _write(uri, data)
    return ArtifactRef(
        name=name,
        kind=kind,
        uri=uri,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        metadata={"format": fmt},
    )


def load_output(ref: ArtifactRef) -> Any:
    """Read back what :func:`store_output` wrote, after checking its SHA-256."""
    fs, path = fsspec.core.url_to_fs(ref.uri)
    try:
        with fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise ArtifactIntegrityError(f"stored output {ref.uri} is gone") from e
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ArtifactIntegrityError(f"stored output {ref.uri} does not match its SHA-256")
    fmt = ref.metadata.get("format")
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    if fmt == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "json":
        return json.loads(data)
    if fmt == "cloudpickle":
        return cloudpickle.loads(data)
    raise ArtifactIntegrityError(f"stored output {ref.uri} has an unknown format {fmt!r}")
