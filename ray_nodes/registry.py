"""The node-type registry: registered name -> :class:`~ray_nodes.node.NodeType` subclass.

Node types come from two places:

* the built-in types listed in :data:`BUILTIN_NODE_TYPES` (one ``"module:Class"`` line each), and
* plugins: any installed distribution that declares an entry point in the group
  ``raypipe.nodes`` whose object is a ``NodeType`` subclass, for example in its
  ``pyproject.toml``::

      [project.entry-points."raypipe.nodes"]
      my_scorer = "my_package.scorer:MyScorer"

  The entry point's name should equal the class's ``type_name``. A plugin that fails to load
  or is not a valid node type is logged and skipped, so one broken package cannot take the
  control plane (or a Ray worker) down with it.

The control plane and the Ray workers both call :func:`default_registry`, so a plugin
installed on both sides is found by both.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from ray_nodes.errors import RayNodesError
from ray_nodes.node import ArtifactKind, NodeType, ParamProblem
from ray_nodes.templating import format_path

__all__ = [
    "BUILTIN_NODE_TYPES",
    "BUILTIN_ORIGIN",
    "ENTRY_POINT_GROUP",
    "RESERVED_PARAMS",
    "NodeRegistry",
    "NodeTypeError",
    "PluginError",
    "UnknownNodeTypeError",
    "default_registry",
]

_log = logging.getLogger(__name__)

#: The entry-point group that plugins register their node types in.
ENTRY_POINT_GROUP = "raypipe.nodes"
#: The origin recorded for built-in types (``NodeType.origin`` in the API).
BUILTIN_ORIGIN = "builtin"
#: Built-in node types as ``"module:Class"``; adding a type is adding a line. Import paths
#: rather than classes keep this module importable without every node's dependencies.
BUILTIN_NODE_TYPES: tuple[str, ...] = (
    "ray_nodes.nodes.noop:NoopNode",
    "ray_nodes.nodes.data_loader:DataLoaderNode",
    "ray_nodes.nodes.data_preprocessor:DataPreprocessorNode",
    "ray_nodes.nodes.train_test_split:TrainTestSplitNode",
    "ray_nodes.nodes.feature_scaler:FeatureScalerNode",
    "ray_nodes.nodes.model_trainer:ModelTrainerNode",
    "ray_nodes.nodes.model_evaluator:ModelEvaluatorNode",
    "ray_nodes.nodes.model_saver:ModelSaverNode",
)
#: Param keys that the validator and the engine handle for every type; a type's schema may not
#: declare them. ``input_from`` names the upstream node to take an input from (see
#: :mod:`ray_nodes.graph`).
RESERVED_PARAMS: frozenset[str] = frozenset({"input_from"})

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class NodeTypeError(RayNodesError, ValueError):
    """A class cannot be registered: a bad or duplicate name, a bad schema or kinds."""


class UnknownNodeTypeError(RayNodesError, KeyError):
    """No node type is registered under the name asked for."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
        super().__init__(f"unknown node type {name!r}{hint}")
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; show the sentence instead.
        return str(self.args[0])


@dataclass(frozen=True)
class PluginError:
    """A plugin entry point that was skipped, kept so the server can say why."""

    entry_point: str
    origin: str
    error: str


@dataclass(frozen=True)
class _Entry:
    cls: type[NodeType]
    origin: str
    validator: Draft202012Validator


class NodeRegistry:
    """Node types by registered name, each with its origin and compiled parameter schema.

    Thread-safe for reads once populated; registration takes a lock so that concurrent
    first calls of :func:`default_registry` cannot interleave.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.plugin_errors: list[PluginError] = []

    # -- lookup -------------------------------------------------------------------------------

    def get(self, name: str) -> type[NodeType]:
        """The class registered as ``name``.

        Raises:
            UnknownNodeTypeError: nothing is registered under ``name``; the error carries
                close matches.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownNodeTypeError(name, self.close_matches(name))
        return entry.cls

    def origin(self, name: str) -> str:
        """``"builtin"`` or the name of the distribution that registered ``name``."""
        self.get(name)
        return self._entries[name].origin

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._entries))

    def close_matches(self, name: str, n: int = 3) -> list[str]:
        """Registered names that look like ``name`` (a typo's likely intent)."""
        return difflib.get_close_matches(name, self._entries, n=n, cutoff=0.6)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def check_params(self, name: str, params: Mapping[str, Any]) -> list[ParamProblem]:
        """Every problem with ``params`` for type ``name``: one per JSON Schema error, then the
        type's :meth:`~ray_nodes.node.NodeType.check_params` when the schema is satisfied.

        ``params`` must already be free of reserved keys and templates (substitute them
        first); paths in the result are relative to ``params``, such as ``columns[0]``.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownNodeTypeError(name, self.close_matches(name))
        problems = _schema_problems(entry.validator, params)
        if not problems:
            # check_params may rely on the schema (types, required keys), so it runs only on
            # params that satisfy it.
            problems = list(entry.cls.check_params(params))
        return problems

    # -- registration -------------------------------------------------------------------------

    def register(self, cls: type[NodeType], *, origin: str = BUILTIN_ORIGIN) -> type[NodeType]:
        """Add a node type under its ``type_name``; returns ``cls`` so it works as a decorator.

        Raises:
            NodeTypeError: ``cls`` is not a concrete NodeType subclass, its name is malformed
                or taken, its parameter schema is not a valid draft 2020-12 object schema or
                declares a reserved key, or its artifact kinds are inconsistent.
        """
        validator = _check_node_type(cls)
        with self._lock:
            taken = self._entries.get(cls.type_name)
            if taken is not None:
                raise NodeTypeError(
                    f"node type {cls.type_name!r} is already registered "
                    f"(by {taken.cls.__module__}.{taken.cls.__qualname__}, origin {taken.origin!r})"
                )
            self._entries[cls.type_name] = _Entry(cls, origin, validator)
        return cls

    def load_builtins(self, paths: tuple[str, ...] = BUILTIN_NODE_TYPES) -> None:
        """Register the built-in types. A broken built-in is a bug, so errors propagate."""
        for path in paths:
            self.register(_import_object(path), origin=BUILTIN_ORIGIN)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every node type that installed distributions declare in ``group``.

        A plugin that fails to import, is not a NodeType subclass, or whose name is taken is
        logged, recorded in :attr:`plugin_errors` and skipped.
        """
        for ep in metadata.entry_points(group=group):
            origin = ep.dist.name if ep.dist is not None else "unknown"
            try:
                obj = ep.load()
                if not (isinstance(obj, type) and issubclass(obj, NodeType)):
                    raise NodeTypeError(f"{ep.value} is not a NodeType subclass")
                if ep.name != getattr(obj, "type_name", ep.name):
                    # Not fatal: the class's type_name is what specs use, but the mismatch
                    # will confuse whoever reads the package metadata.
                    _log.warning(
                        "entry point %r of %s registers node type %r under a different name",
                        ep.name,
                        origin,
                        obj.type_name,
                    )
                self.register(obj, origin=origin)
            except Exception as exc:
                _log.error(
                    "skipping node-type plugin %s = %s from %s: %s",
                    ep.name,
                    ep.value,
                    origin,
                    exc,
                    exc_info=True,
                )
                self.plugin_errors.append(PluginError(f"{ep.name} = {ep.value}", origin, str(exc)))


def _import_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check_node_type(cls: Any) -> Draft202012Validator:
    """Check a class's declarations and compile its parameter schema."""
    if not (isinstance(cls, type) and issubclass(cls, NodeType)) or cls is NodeType:
        raise NodeTypeError(f"{cls!r} is not a NodeType subclass")
    name = getattr(cls, "type_name", None)
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
        raise NodeTypeError(
            f"{cls.__qualname__}.type_name {name!r} must match [a-z][a-z0-9_]{{0,62}}"
        )
    schema = cls.parameter_schema
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise NodeTypeError(f"node type {name!r}: invalid parameter schema: {exc.message}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise NodeTypeError(f'node type {name!r}: parameter schema must have "type": "object"')
    reserved = RESERVED_PARAMS & set(schema.get("properties", {}))
    if reserved:
        raise NodeTypeError(f"node type {name!r}: params {sorted(reserved)} are reserved")
    kinds = tuple(cls.inputs)
    if not all(isinstance(k, ArtifactKind) and k is not ArtifactKind.NONE for k in kinds):
        raise NodeTypeError(f"node type {name!r}: inputs must be ArtifactKinds other than NONE")
    if not isinstance(cls.output, ArtifactKind):
        raise NodeTypeError(f"node type {name!r}: output must be an ArtifactKind")
    if cls.variadic_inputs and len(kinds) != 1:
        raise NodeTypeError(f"node type {name!r}: variadic inputs must declare exactly one kind")
    return Draft202012Validator(schema)


def _schema_problems(
    validator: Draft202012Validator, params: Mapping[str, Any]
) -> list[ParamProblem]:
    """One ParamProblem per schema error, pointing at the offending key where possible."""
    problems: list[ParamProblem] = []
    seen: set[tuple[str, str]] = set()
    for error in sorted(
        validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        where = list(error.absolute_path)
        instance = error.instance
        if error.validator == "required" and isinstance(instance, dict):
            # Point at the missing key itself rather than at its parent object.
            for key in error.validator_value:
                if key not in instance:
                    problems.append(ParamProblem(format_path([*where, key]), "required"))
        elif error.validator == "additionalProperties" and isinstance(instance, dict):
            schema = error.schema if isinstance(error.schema, dict) else {}
            known = list(schema.get("properties", {}))
            patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
            for key in instance:
                if key in known or any(p.search(key) for p in patterns):
                    continue
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                allowed = f" (allowed: {', '.join(known)})" if known and not close else ""
                problems.append(
                    ParamProblem(format_path([*where, key]), f"unknown parameter{hint}{allowed}")
                )
        else:
            problems.append(ParamProblem(format_path(where), error.message))
    unique = []
    for p in problems:
        if (p.path, p.description) not in seen:
            seen.add((p.path, p.description))
            unique.append(p)
    return unique


_default: NodeRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> NodeRegistry:
    """The process-wide registry: the built-in types plus every ``raypipe.nodes`` plugin.

    Built on first use (entry-point discovery scans the installed distributions once).
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                registry = NodeRegistry()
                registry.load_builtins()
                registry.load_entry_points()
                _default = registry
    return _default
