"""Run-time parameter templates in node params.

A string param value that is exactly ``{{ parameters.NAME }}`` (whitespace inside the braces
is optional) is replaced, when a run starts, by the run's value of ``NAME`` or, when the run
does not set it, by the default declared in ``PipelineSpec.parameters``. The value keeps its
JSON type: ``{{ parameters.lr }}`` with a default of ``0.1`` becomes the number ``0.1``, not a
string. ``{{ run.name }}`` (the run's resource name) and ``{{ run.scheduled_time }}`` (the
nominal fire time for scheduled runs, the creation time otherwise, as RFC 3339) are
available too.

Templates are whole values only: there is no interpolation inside longer strings. A string
that embeds ``{{ parameters.… }}`` or ``{{ run.… }}`` in other text is reported by
:func:`find_malformed` so that validation rejects it instead of silently passing it through
as a literal.

This module is pure Python (no Ray, no protobuf) so that the control plane, the engine and
tests share it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ray_nodes.errors import RayNodesError

__all__ = [
    "NAMESPACES",
    "RUN_FIELDS",
    "Path",
    "TemplateError",
    "TemplateRef",
    "find_malformed",
    "find_references",
    "format_path",
    "iter_leaves",
    "malformed_reason",
    "merge_parameters",
    "parse_reference",
    "reference_problem",
    "resolve",
    "substitute",
]

#: A location inside a params value: dict keys and list indices from the top.
Path = tuple[str | int, ...]

#: The namespaces a template may name.
NAMESPACES = frozenset({"parameters", "run"})
#: The names available under ``run.``.
RUN_FIELDS = frozenset({"name", "scheduled_time"})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A whole-value reference in any namespace; the namespace is checked separately so that a
# typo such as ``{{ params.x }}`` is reported instead of being taken as literal text.
_WHOLE = re.compile(rf"\{{\{{\s*(?P<ns>{_IDENT})\.(?P<name>{_IDENT})\s*\}}\}}")
# Something that is meant to be a template in one of our namespaces.
_LOOKS_LIKE = re.compile(r"\{\{\s*(?:parameters|run)\b")


@dataclass(frozen=True)
class TemplateRef:
    """A parsed ``{{ namespace.name }}`` reference."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}.{self.name}"


class TemplateError(RayNodesError, ValueError):
    """A template names something that does not exist.

    Attributes:
        path: Where in the params value the reference is.
        ref: The reference, when the error is about one.
    """

    def __init__(self, message: str, *, path: Path = (), ref: TemplateRef | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.ref = ref


def format_path(parts: Path | list[str | int]) -> str:
    """``("columns", 0, "name")`` -> ``"columns[0].name"``, the field-path style of the API."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_reference(value: object) -> TemplateRef | None:
    """The reference ``value`` is, when it is a string that is exactly ``{{ ns.name }}``."""
    if not isinstance(value, str) or not value.startswith("{{"):
        return None
    match = _WHOLE.fullmatch(value)
    if match is None:
        return None
    return TemplateRef(match["ns"], match["name"])


def iter_leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf of a JSON-like value with its path, in document order; iterative, so
    nesting depth is no limit."""
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend(((*where, key), item[key]) for key in reversed(list(item)))
        elif isinstance(item, list | tuple):
            stack.extend(((*where, i), item[i]) for i in reversed(range(len(item))))
        else:
            yield where, item


def find_references(value: Any, path: Path = ()) -> Iterator[tuple[Path, TemplateRef]]:
    """Every whole-value template reference in a nested dict/list value, in document order.

    References in unknown namespaces are yielded too; the caller decides what is known.
    """
    for where, leaf in iter_leaves(value, path):
        ref = parse_reference(leaf)
        if ref is not None:
            yield where, ref


def malformed_reason(value: object) -> str | None:
    """Why ``value`` is a broken template (text that embeds one, say), or None if it is not."""
    if isinstance(value, str) and parse_reference(value) is None and _LOOKS_LIKE.search(value):
        return (
            f"{value!r} is not a template: a template must be the whole value, exactly "
            "'{{ parameters.NAME }}', '{{ run.name }}' or '{{ run.scheduled_time }}'"
        )
    return None


def find_malformed(value: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """Strings that look like templates but are not exactly one reference, with why."""
    for where, leaf in iter_leaves(value, path):
        reason = malformed_reason(leaf)
        if reason is not None:
            yield where, reason


def reference_problem(ref: TemplateRef, parameter_names: Iterable[str]) -> str | None:
    """Why ``ref`` cannot be resolved when the spec declares ``parameter_names``, or None."""
    if ref.namespace == "parameters":
        names = set(parameter_names)
        if ref.name in names:
            return None
        known = ", ".join(sorted(names)) or "none"
        return (
            f"unknown parameter {ref.name!r} in '{{{{ {ref} }}}}': declare it in the spec's "
            f"parameters (declared: {known})"
        )
    if ref.namespace == "run":
        if ref.name in RUN_FIELDS:
            return None
        return (
            f"unknown run field {ref.name!r} in '{{{{ {ref} }}}}' "
            f"(available: {', '.join(sorted(RUN_FIELDS))})"
        )
    return (
        f"unknown template namespace {ref.namespace!r} in '{{{{ {ref} }}}}': "
        "use parameters.NAME or run.NAME"
    )


def substitute(value: Any, lookup: Callable[[Path, TemplateRef], Any]) -> Any:
    """A copy of ``value`` with each reference replaced by ``lookup(path, ref)``.

    ``lookup`` may raise to reject a reference. The input is not modified and the result
    shares no mutable containers with it or with the looked-up values.
    """

    def go(item: Any, where: Path) -> Any:
        if isinstance(item, Mapping):
            return {key: go(item[key], (*where, key)) for key in item}
        if isinstance(item, list | tuple):
            return [go(x, (*where, i)) for i, x in enumerate(item)]
        ref = parse_reference(item)
        if ref is None:
            return item
        return copy.deepcopy(lookup(where, ref))

    # Params are shallow (a few levels of JSON), so recursion depth is not a concern here.
    return go(value, ())


def resolve(
    params: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any],
    run_name: str,
    scheduled_time: str,
) -> dict[str, Any]:
    """Params with every template replaced by its run-time value.

    Args:
        params: A node's params (JSON-like).
        parameters: The run's effective parameter values: the spec's defaults overlaid with
            the run's values (see :func:`merge_parameters`).
        run_name: The run's resource name, for ``{{ run.name }}``.
        scheduled_time: RFC 3339 time, for ``{{ run.scheduled_time }}``.

    Raises:
        TemplateError: a reference names an unknown parameter, run field or namespace.
    """
    run = {"name": run_name, "scheduled_time": scheduled_time}

    def lookup(where: Path, ref: TemplateRef) -> Any:
        problem = reference_problem(ref, parameters)
        if problem is not None:
            raise TemplateError(f"{format_path(where)}: {problem}", path=where, ref=ref)
        return parameters[ref.name] if ref.namespace == "parameters" else run[ref.name]

    result: dict[str, Any] = substitute(dict(params), lookup)
    return result


def merge_parameters(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The run's effective parameters: ``defaults`` (from the spec) overlaid with ``values``.

    Raises:
        TemplateError: ``values`` sets a parameter the spec does not declare; ``path`` is
            ``(name,)``.
    """
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none declared"
        names = ", ".join(map(repr, unknown))
        raise TemplateError(
            f"unknown parameter {names} (the spec declares: {known})", path=(unknown[0],)
        )
    return {**copy.deepcopy(dict(defaults)), **copy.deepcopy(dict(values))}
