"""The pipeline builder: a DAG written in Python, compiled to a PipelineSpec.

.. code-block:: python

    p = raypipe.Pipeline("churn")
    data = p.parameter("data", "data/churn.csv")
    p.add("load", "data_loader", path=data)
    p.add("clean", "data_preprocessor", drop_duplicates=True, fill_missing="mean", num_cpus=2)
    split = p.add("split", "train_test_split", target="churned", test_size=0.2)
    p.add("scale", "feature_scaler", method="standard")
    p.add("train", "model_trainer", backend="xgboost", task="classification",
          num_gpus=1, gpu_policy="preferred", retry=2, timeout="30m")
    p.add("evaluate", "model_evaluator", depends_on=["train", split])

Each node depends on the node added just before it unless ``depends_on`` says otherwise
(``depends_on=[]`` makes a root). Keyword arguments that are not node options become the
node's params; ``params={...}`` passes params whose names clash with an option.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2

from raypipe._errors import SpecError
from raypipe._specfile import (
    Format,
    SpecLike,
    as_spec,
    dump_spec,
    dumps_spec,
    load_spec,
    spec_to_dict,
)
from raypipe.v1 import pipeline_spec_pb2

DurationLike = float | int | str | dt.timedelta | duration_pb2.Duration
"""Seconds as a number, a string such as ``"30s"``, ``"500ms"``, ``"5m"`` or ``"1h30m"``, a
timedelta or a Duration message."""

MemoryLike = int | str
"""Bytes as an integer, or a string with a unit: ``"512MiB"``, ``"4GiB"``, ``"1.5GB"``."""

RetryLike = int | Mapping[str, Any] | pipeline_spec_pb2.RetryPolicy
"""Retries: the number of extra attempts, the JSON mapping of a RetryPolicy (durations may be
any :data:`DurationLike`), or the message."""

CacheLike = bool | str | Mapping[str, Any] | pipeline_spec_pb2.CachePolicy
"""Caching: True to enable, a string to enable with that cache_version, the JSON mapping of a
CachePolicy, or the message."""


class Pipeline:
    """A pipeline's DAG under construction; :meth:`to_spec` compiles it to a PipelineSpec.

    Wrong use of the builder itself (a duplicate node id, a dependency on a node that was
    not added, a malformed memory size) raises ``ValueError`` at once; whether the node
    types and their params make sense is checked by the server
    (:meth:`raypipe.Client.validate_pipeline_spec`).

    Args:
        name: The pipeline id the builder is meant for, such as ``churn``; used by
            :meth:`raypipe.Client.apply` when no other id is given.
        failure_policy: ``"fail_fast"`` (the default) or ``"continue_independent"``; the
            enum's full names and numbers work too.
    """

    def __init__(self, name: str, *, failure_policy: str | int | None = None) -> None:
        if not name:
            raise ValueError("a pipeline needs a name, such as Pipeline('churn')")
        self.name = name.removeprefix("pipelines/")
        self._nodes: dict[str, pipeline_spec_pb2.Node] = {}
        self._parameters: dict[str, struct_pb2.Value] = {}
        self._last: str | None = None
        self.failure_policy = failure_policy

    # --- building -------------------------------------------------------------------------

    @property
    def failure_policy(self) -> int:
        """What a run does when a node fails; assign a name such as ``"continue_independent"``."""
        return self._failure_policy

    @failure_policy.setter
    def failure_policy(self, value: str | int | None) -> None:
        self._failure_policy = enum_value(
            pipeline_spec_pb2.FailurePolicy, "FAILURE_POLICY_", value, "failure_policy"
        )

    def parameter(self, name: str, default: Any = None) -> str:
        """Declare a run-time parameter with its default value.

        Args:
            name: The parameter's name; runs set it with ``parameters={name: value}``.
            default: Its value when a run does not set it; any JSON value.

        Returns:
            The reference ``"{{ parameters.NAME }}"``, to use as a node param's value.

        Raises:
            ValueError: The parameter is declared already.
        """
        if name in self._parameters:
            raise ValueError(f"parameter {name!r} is declared already")
        self._parameters[name] = _value(default, f"parameter {name!r}")
        return f"{{{{ parameters.{name} }}}}"

    def add(
        self,
        id: str,
        type: str,
        *,
        depends_on: str | Iterable[str] | None = None,
        params: Mapping[str, Any] | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory_bytes: MemoryLike | None = None,
        accelerator_type: str | None = None,
        gpu_policy: str | int | None = None,
        retry: RetryLike | None = None,
        timeout: DurationLike | None = None,
        cache: CacheLike | None = None,
        display_name: str | None = None,
        **node_params: Any,
    ) -> str:
        """Add a node.

        Args:
            id: Unique in the pipeline, such as ``train``.
            type: A registered node type, such as ``model_trainer`` (``raypipe node-types``).
            depends_on: The upstream node ids. None (the default) means the node added just
                before this one, if any; ``[]`` makes a root.
            params: Node params, for names that clash with the options of this method.
            num_cpus: Logical CPUs for the node's Ray task; fractions allowed.
            num_gpus: GPUs; a fraction up to 1 shares a device.
            memory_bytes: Memory to reserve, as bytes or a string such as ``"4GiB"``.
            accelerator_type: A Ray accelerator type such as ``"A100"``.
            gpu_policy: ``"required"`` (the default) or ``"preferred"`` (run on CPU when the
                cluster has no GPU).
            retry: Extra attempts on failure; see :data:`RetryLike`.
            timeout: The longest one attempt may run; see :data:`DurationLike`.
            cache: Reuse an earlier run's output; see :data:`CacheLike`.
            display_name: A name for displays; defaults to the id.
            **node_params: The node's params, validated by the server against the type's
                schema; values are JSON values.

        Returns:
            The node id, to use in a later node's ``depends_on``.

        Raises:
            ValueError: An empty or duplicate id, an unknown upstream node, or a malformed
                option.
        """
        if not id or not type:
            raise ValueError("a node needs an id and a type, such as add('load', 'data_loader')")
        if id in self._nodes:
            raise ValueError(f"node {id!r} is added already: node ids are unique in a pipeline")
        upstream = self._upstream(id, depends_on)
        clash = set(params or ()) & set(node_params)
        if clash:
            raise ValueError(f"node {id!r}: params given twice: {', '.join(sorted(clash))}")
        node = pipeline_spec_pb2.Node(id=id, type=type, depends_on=upstream)
        all_params = {**(params or {}), **node_params}
        if all_params:
            node.params.CopyFrom(_struct(all_params, f"node {id!r}"))
        resources = _resources(
            id,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            memory_bytes=memory_bytes,
            accelerator_type=accelerator_type,
            gpu_policy=gpu_policy,
        )
        if resources is not None:
            node.resources.CopyFrom(resources)
        if retry is not None:
            node.retry.CopyFrom(_retry(retry, id))
        if timeout is not None:
            node.timeout.CopyFrom(duration(timeout))
        if cache is not None:
            node.cache.CopyFrom(_cache(cache, id))
        if display_name:
            node.display_name = display_name
        self._nodes[id] = node
        self._last = id
        return id

    def _upstream(self, id: str, depends_on: str | Iterable[str] | None) -> list[str]:
        if depends_on is None:
            return [self._last] if self._last is not None else []
        ids = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        for up in ids:
            if up == id:
                raise ValueError(f"node {id!r} cannot depend on itself")
            if up not in self._nodes:
                raise ValueError(
                    f"node {id!r} depends on {up!r}, which is not added: add upstream nodes first"
                )
        if len(set(ids)) != len(ids):
            raise ValueError(f"node {id!r} lists an upstream node twice: {ids}")
        return ids

    # --- reading --------------------------------------------------------------------------

    @property
    def node_ids(self) -> tuple[str, ...]:
        """The node ids in the order they were added."""
        return tuple(self._nodes)

    def node(self, id: str) -> pipeline_spec_pb2.Node:
        """A copy of one node as it will appear in the spec.

        Raises:
            KeyError: No node has that id.
        """
        copy = pipeline_spec_pb2.Node()
        copy.CopyFrom(self._nodes[id])
        return copy

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, id: object) -> bool:
        return id in self._nodes

    def __iter__(self) -> Iterator[pipeline_spec_pb2.Node]:
        return (self.node(i) for i in self._nodes)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, nodes={list(self._nodes)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return self.name == other.name and self.to_spec() == other.to_spec()

    __hash__ = None  # type: ignore[assignment]  # mutable

    # --- compiling ------------------------------------------------------------------------

    def to_spec(self) -> pipeline_spec_pb2.PipelineSpec:
        """Compile to a new PipelineSpec message (later changes to the builder don't affect it)."""
        spec = pipeline_spec_pb2.PipelineSpec(
            nodes=list(self._nodes.values()), failure_policy=self._failure_policy
        )
        for name, value in self._parameters.items():
            spec.parameters[name].CopyFrom(value)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec's JSON mapping, snake_case keys, as in a pipeline file."""
        return spec_to_dict(self.to_spec())

    def to_yaml(self) -> str:
        """The spec as a YAML pipeline file."""
        return dumps_spec(self.to_spec(), "yaml")

    def to_json(self) -> str:
        """The spec as a JSON pipeline file."""
        return dumps_spec(self.to_spec(), "json")

    def save(self, path: str | os.PathLike[str], format: Format | None = None) -> None:
        """Write the spec to a pipeline file (YAML, or JSON for a ``.json`` path)."""
        dump_spec(self.to_spec(), path, format)

    @classmethod
    def from_spec(cls, spec: SpecLike, name: str) -> Pipeline:
        """A builder holding an existing spec, to change or extend it.

        Nodes keep their explicit ``depends_on``; a node added afterwards chains to the
        spec's last node unless it says otherwise.

        Args:
            spec: A PipelineSpec, its JSON mapping as a dict, or another builder.
            name: The pipeline id.

        Raises:
            ValueError: The spec has duplicate node ids.
        """
        message = as_spec(spec)
        p = cls(name, failure_policy=message.failure_policy)
        for node in message.nodes:
            if node.id in p._nodes:
                raise ValueError(f"the spec has node id {node.id!r} twice")
            copy = pipeline_spec_pb2.Node()
            copy.CopyFrom(node)
            p._nodes[node.id] = copy
            p._last = node.id
        for key, value in message.parameters.items():
            p._parameters[key] = value
        return p

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], name: str | None = None) -> Pipeline:
        """A builder holding the spec of a YAML/JSON pipeline file.

        Args:
            path: The file.
            name: The pipeline id; by default the file's stem (``churn.yaml`` -> ``churn``).
        """
        return cls.from_spec(load_spec(path), name or Path(path).stem)


# --- option parsing -----------------------------------------------------------------------


def enum_value(enum: Any, prefix: str, value: str | int | None, what: str) -> Any:
    """An enum number from a short name (``"preferred"``), a full name or a number."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in enum.values():
            raise ValueError(f"{what}: {value} is not a valid value")
        return value
    if isinstance(value, str):
        full = value.upper()
        full = full if full.startswith(prefix) else prefix + full
        if full in enum.keys():  # noqa: SIM118 - an enum wrapper, not a dict
            return enum.Value(full)
    names = [k for k in enum.keys() if not k.endswith("_UNSPECIFIED")]  # noqa: SIM118
    choices = ", ".join(k.removeprefix(prefix).lower() for k in names)
    raise ValueError(f"{what}: {value!r} is not one of: {choices}")


def _resources(
    node_id: str,
    *,
    num_cpus: float | None,
    num_gpus: float | None,
    memory_bytes: MemoryLike | None,
    accelerator_type: str | None,
    gpu_policy: str | int | None,
) -> pipeline_spec_pb2.Resources | None:
    if all(v is None for v in (num_cpus, num_gpus, memory_bytes, accelerator_type, gpu_policy)):
        return None
    for what, amount in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if amount is not None and (not math.isfinite(amount) or amount < 0):
            raise ValueError(f"node {node_id!r}: {what} must be a non-negative number")
    return pipeline_spec_pb2.Resources(
        num_cpus=num_cpus or 0.0,
        num_gpus=num_gpus or 0.0,
        memory_bytes=memory(memory_bytes) if memory_bytes is not None else 0,
        accelerator_type=accelerator_type or "",
        gpu_policy=enum_value(
            pipeline_spec_pb2.GpuPolicy, "GPU_POLICY_", gpu_policy, f"node {node_id!r}: gpu_policy"
        ),
    )


_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]i?)?b?\s*", re.IGNORECASE)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def memory(value: MemoryLike) -> int:
    """Bytes from an integer or a size string.

    ``"4GiB"``/``"4Gi"`` are binary (4 * 1024**3), ``"4GB"``/``"4G"`` decimal (4 * 1000**3), as in
    Kubernetes; a bare number is bytes.

    Raises:
        ValueError: Not a size, or negative.
    """
    if isinstance(value, bool):
        raise ValueError("a memory size is a number of bytes or a string such as '4GiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"memory size {value} is negative")
        return value
    match = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a memory size such as '512MiB', '4GiB' or '1.5GB'")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    factor = 1
    if unit:
        factor = (1024 if unit.endswith("i") else 1000) ** _POWERS[unit[0]]
    return round(number * factor)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def duration(value: DurationLike) -> duration_pb2.Duration:
    """A Duration message from seconds, a timedelta, or a string like ``"1h30m"``/``"500ms"``.

    Raises:
        ValueError: Not a duration, or negative.
    """
    if isinstance(value, duration_pb2.Duration):
        return value
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration such as '30s', '500ms', '5m', '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"{value!r} is not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration {value!r} must be finite and not negative")
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


_RETRY_DURATIONS = ("initial_backoff", "initialBackoff", "max_backoff", "maxBackoff")


def _retry(value: RetryLike, node_id: str) -> pipeline_spec_pb2.RetryPolicy:
    if isinstance(value, pipeline_spec_pb2.RetryPolicy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"node {node_id!r}: retry must not be negative")
        return pipeline_spec_pb2.RetryPolicy(max_retries=value)
    if isinstance(value, Mapping):
        data = dict(value)
        for key in _RETRY_DURATIONS:
            if key in data and not isinstance(data[key], str):
                data[key] = json_format.MessageToJson(duration(data[key])).strip('"')
        try:
            return json_format.ParseDict(data, pipeline_spec_pb2.RetryPolicy())
        except json_format.ParseError as e:
            raise ValueError(f"node {node_id!r}: retry: {e}") from None
    raise ValueError(f"node {node_id!r}: retry is a number of retries, a dict or a RetryPolicy")


def _cache(value: CacheLike, node_id: str) -> pipeline_spec_pb2.CachePolicy:
    if isinstance(value, pipeline_spec_pb2.CachePolicy):
        return value
    if isinstance(value, bool):
        return pipeline_spec_pb2.CachePolicy(enabled=value)
    if isinstance(value, str):
        return pipeline_spec_pb2.CachePolicy(enabled=True, cache_version=value)
    if isinstance(value, Mapping):
        try:
            return json_format.ParseDict(dict(value), pipeline_spec_pb2.CachePolicy())
        except json_format.ParseError as e:
            raise ValueError(f"node {node_id!r}: cache: {e}") from None
    raise ValueError(f"node {node_id!r}: cache is a bool, a cache version, a dict or a message")


def _jsonable(value: Any, where: str) -> Any:
    """Python values as JSON values; paths become strings, tuples lists."""
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: {value} has no JSON representation")
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _struct(params: Mapping[str, Any], where: str) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_jsonable(dict(params), f"{where} params"))
    return s


def _value(value: Any, where: str) -> struct_pb2.Value:
    v = struct_pb2.Value()
    try:
        json_format.ParseDict(_jsonable(value, where), v)
    except json_format.ParseError as e:  # pragma: no cover - _jsonable accepts JSON only
        raise SpecError(str(e), path=where) from None
    return v
