"""The cross-run output cache: a node whose ``CachePolicy`` is enabled reuses the stored
output of an earlier execution with the same cache key instead of running again.

A node's key is the SHA-256 of a canonical JSON document holding its type, its params with the
run's parameters filled in (as the engine will run them: ``{{ parameters.x }}`` resolved, so a
parameter that only another node uses does not change this node's key; a node that uses
``{{ run.name }}`` or ``{{ run.scheduled_time }}`` gets a new key every run, so it never
reuses an output), its
``cache_version``, and, in order, the keys of the nodes it depends on. Upstream keys are
computed for every node, cached or not, so a change anywhere upstream (a loader's path, a
split's seed) gives every node below it a new key.

What the key does not see: the contents of files a node reads. A ``data_loader`` whose file
changed under the same path keeps its key; bump ``cache_version`` (or change the path) to
read it again. Resources, retries and timeouts are not part of the key: they change how a
node runs, not what it computes.

Keys are stored on each node's record (``NodeExecution.cache_key``, indexed), so the lookup is
one query; the newest SUCCEEDED or CACHED execution whose stored output still exists wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import fsspec

from control_plane.runs.events import artifact_ref
from control_plane.storage.repository import Repository
from ray_nodes.engine.types import ArtifactRef
from ray_nodes.graph import dependency_map, nodes_from_spec, topological_order
from ray_nodes.params import node_params, run_parameters
from raypipe.v1 import pipeline_spec_pb2

__all__ = ["CACHE_KEY_VERSION", "cache_keys", "cached_outputs"]

log = logging.getLogger("raypipe.cache")

#: Bumped when the key's recipe changes, so old keys stop matching.
CACHE_KEY_VERSION = 1


def cache_keys(
    spec: pipeline_spec_pb2.PipelineSpec, parameters: Mapping[str, Any], *, run_id: str
) -> dict[str, str]:
    """node id -> cache key, for the nodes of ``spec`` whose CachePolicy is enabled.

    Args:
        spec: A validated spec (no cycles, known dependencies).
        parameters: The run's parameter values; the spec's defaults fill the rest.
        run_id: The run's id: ``{{ run.* }}`` templates resolve to it, so that nodes using
            them get a key of their own.
    """
    if not any(n.cache.enabled for n in spec.nodes):
        return {}
    merged = run_parameters(spec, parameters)
    by_id = {n.id: n for n in spec.nodes}
    keys: dict[str, str] = {}
    # In topological order every upstream key exists before a node needs it.
    for node_id in topological_order(dependency_map(nodes_from_spec(spec))):
        node = by_id[node_id]
        # ``{{ run.* }}`` as the run's id: a node that uses them gets a key of its own.
        params = node_params(node, parameters=merged, run_name=run_id, scheduled_time=run_id)
        document = {
            "v": CACHE_KEY_VERSION,
            "type": node.type,
            "params": params,
            "cache_version": node.cache.cache_version,
            "upstream": [keys[u] for u in node.depends_on],
        }
        text = json.dumps(_whole(document), sort_keys=True, separators=(",", ":"), default=str)
        keys[node_id] = hashlib.sha256(text.encode()).hexdigest()
    return {n.id: keys[n.id] for n in spec.nodes if n.cache.enabled}


def _whole(value: Any) -> Any:
    """Whole floats as ints: a run that passes ``7`` and a default of ``7.0`` (protobuf numbers
    are doubles) mean the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def cached_outputs(
    repo: Repository, keys: Mapping[str, str], *, run_id: str
) -> dict[str, tuple[str, tuple[ArtifactRef, ...]]]:
    """node id -> (the run that produced it, its stored artifacts), for the keyed nodes whose
    output an earlier run stored and that still exists; the shape RunSubmission.reuse takes."""
    found = repo.find_cached_nodes(set(keys.values()), exclude_run_id=run_id)
    reuse: dict[str, tuple[str, tuple[ArtifactRef, ...]]] = {}
    for node_id, key in keys.items():
        hit = found.get(key)
        if hit is None:
            continue
        source_run, record = hit
        artifacts = tuple(artifact_ref(a) for a in record.artifacts)
        output = next((a for a in artifacts if a.name == "output"), None)
        if output is None or not _exists(output.uri):
            log.info("run %s: cached output of node %s is gone; it runs again", run_id, node_id)
            continue
        origin = record.cached_from.removeprefix("runs/") or source_run
        reuse[node_id] = (origin, artifacts)
    return reuse


def _exists(uri: str) -> bool:
    if uri.startswith("data:"):
        return True
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        return bool(fs.exists(path))
    except Exception:  # an unreachable store: run the node rather than fail the run
        log.warning("cannot check the cached output %s", uri, exc_info=True)
        return False
