"""Pipeline specs as stored values: the canonical digest of a ``PipelineSpec``."""

from __future__ import annotations

import hashlib
import json

from google.protobuf import json_format

from raypipe.v1 import pipeline_spec_pb2

__all__ = ["canonical_spec_bytes", "spec_digest"]


def canonical_spec_bytes(spec: pipeline_spec_pb2.PipelineSpec) -> bytes:
    """The canonical serialization of ``spec`` that :func:`spec_digest` hashes.

    It is the protobuf JSON mapping with proto field names, keys sorted at every level
    (so map entries and the order fields were set in do not matter), no insignificant
    whitespace and UTF-8 text. Fields at their default value are omitted, so setting a field
    to its default changes nothing; an explicitly set but empty message (``resources: {}``)
    does appear, as it does in the JSON mapping. The order of ``nodes`` and ``depends_on`` is
    significant: it is part of what the user wrote.

    Raises:
        ValueError: a ``params`` or ``parameters`` value is NaN or infinite, which JSON cannot
            represent; validation rejects such specs first.
    """
    as_dict = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    text = json.dumps(as_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def spec_digest(spec: pipeline_spec_pb2.PipelineSpec) -> str:
    """Lowercase hex SHA-256 of :func:`canonical_spec_bytes`; ``PipelineVersion.spec_digest``.

    Two specs with the same content have the same digest however they were built (field
    order, map insertion order, JSON or YAML or code), so clients can tell whether a version
    changed anything.
    """
    return hashlib.sha256(canonical_spec_bytes(spec)).hexdigest()
