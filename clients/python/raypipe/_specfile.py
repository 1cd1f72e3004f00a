"""Pipeline files: YAML or JSON documents that are the protobuf JSON mapping of PipelineSpec.

Keys may be snake_case (``depends_on``) or camelCase (``dependsOn``), as protobuf's JSON parser
accepts; enums are written by name (``FAILURE_POLICY_FAIL_FAST``), durations as ``"30s"``,
node params and run parameters as plain JSON values. Files written by :func:`dump_spec` use
snake_case and read back into exactly the same message.

Errors name the file, the line (YAML) and the JSON path of the offending element, such as
``churn.yaml:14: nodes[2].retry.initialBackoff: Duration must end with letter "s"``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal, Protocol, runtime_checkable

import yaml
from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.message import Message

from raypipe._errors import SpecError
from raypipe.v1 import pipeline_spec_pb2

Format = Literal["yaml", "json"]
PathToken = str | int


@runtime_checkable
class SupportsToSpec(Protocol):
    """Anything that compiles to a PipelineSpec, such as :class:`raypipe.Pipeline`."""

    def to_spec(self) -> pipeline_spec_pb2.PipelineSpec: ...


SpecLike = pipeline_spec_pb2.PipelineSpec | SupportsToSpec | Mapping[str, Any]
"""What SDK methods accept as a spec: the message, a builder, or its JSON mapping as a dict."""


def as_spec(spec: SpecLike) -> pipeline_spec_pb2.PipelineSpec:
    """Turn anything :data:`SpecLike` into a PipelineSpec message.

    Raises:
        SpecError: A dict that is not a valid JSON mapping of PipelineSpec.
        TypeError: Something else altogether.
    """
    if isinstance(spec, pipeline_spec_pb2.PipelineSpec):
        return spec
    if isinstance(spec, SupportsToSpec):
        return spec.to_spec()
    if isinstance(spec, Mapping):
        return spec_from_dict(spec)
    raise TypeError(
        f"expected a PipelineSpec, a raypipe.Pipeline or a dict, got {type(spec).__name__}"
    )


# --- dict <-> message ---------------------------------------------------------------------


def spec_from_dict(
    data: Any, *, source: str = "", _root: yaml.Node | None = None
) -> pipeline_spec_pb2.PipelineSpec:
    """Parse the protobuf JSON mapping of a PipelineSpec (a dict as ``json.load`` gives).

    Args:
        data: The mapping; snake_case and camelCase keys are both accepted.
        source: Where it came from, for error messages.

    Raises:
        SpecError: Naming the JSON path of the first element that does not parse.
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            f"a pipeline spec is a mapping with `nodes`, got {_kind(data)}", source=source
        )
    data = _plain(data)
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(data, spec)
    except json_format.ParseError as e:
        found = _find_problem(spec.DESCRIPTOR, data, [])
        path, problem = found if found else ([], _clean(str(e)))
        line = _yaml_line(_root, path) if _root is not None else 0
        raise SpecError(problem, source=source, path=_format_path(path), line=line) from None
    return spec


def spec_to_dict(spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, Any]:
    """The JSON mapping of a spec with snake_case keys, as pipeline files hold it.

    Unlike plain ``MessageToDict``, 64-bit integers stay numbers and whole floats are written
    as integers (``random_state: 42`` rather than ``42.0``); both parse back to the same
    message.
    """
    return message_to_dict(spec)


def message_to_dict(message: Message) -> dict[str, Any]:
    """Any API message as plain data for JSON/YAML output, as :func:`spec_to_dict` does it:
    snake_case keys, enums by name, timestamps as RFC 3339 strings, natural numbers."""
    raw = json_format.MessageToDict(message, preserving_proto_field_name=True)
    tidied = _tidy(raw, message.DESCRIPTOR)
    assert isinstance(tidied, dict)
    return tidied


_INT64_TYPES = {
    descriptor.FieldDescriptor.TYPE_INT64,
    descriptor.FieldDescriptor.TYPE_UINT64,
    descriptor.FieldDescriptor.TYPE_SINT64,
    descriptor.FieldDescriptor.TYPE_FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED64,
}
_FLOAT_TYPES = {descriptor.FieldDescriptor.TYPE_DOUBLE, descriptor.FieldDescriptor.TYPE_FLOAT}
_MAX_EXACT = 2**53  # beyond this a double has no exact integer counterpart worth writing


def _tidy(value: Any, desc: Any) -> Any:
    """Walk MessageToDict output alongside the descriptor and make numbers read naturally.

    Map and Struct keys come out sorted: protobuf keeps no order for them, and a file written
    twice from the same spec must be the same text."""
    if desc is None or desc.full_name.startswith("google.protobuf."):
        return _whole_floats(value)  # Struct/Value/Duration: free-form JSON
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            out[key] = item
            continue
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                # Maps have no order on the wire; sorted keys make the output stable.
                out[key] = {k: _tidy_scalar(item[k], value_field) for k in sorted(item)}
            elif _is_repeated(field):
                out[key] = [_tidy(v, field.message_type) for v in item]
            else:
                out[key] = _tidy(item, field.message_type)
        elif _is_repeated(field):
            out[key] = [_tidy_scalar(v, field) for v in item]
        else:
            out[key] = _tidy_scalar(item, field)
    return out


def _tidy_scalar(value: Any, field: descriptor.FieldDescriptor) -> Any:
    if field.message_type is not None:
        return _tidy(value, field.message_type)
    if field.type in _INT64_TYPES and isinstance(value, str):
        return int(value)
    if field.type in _FLOAT_TYPES:
        return _whole_floats(value)
    return value


def _whole_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < _MAX_EXACT:
        return int(value)
    if isinstance(value, dict):  # a Struct: a map, so sorted for a stable output
        return {k: _whole_floats(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_whole_floats(v) for v in value]
    return value


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    # `label` is deprecated in newer protobuf releases in favour of `is_repeated`.
    flag = getattr(field, "is_repeated", None)
    if isinstance(flag, bool):
        return flag
    return bool(getattr(field, "label", 0) == descriptor.FieldDescriptor.LABEL_REPEATED)


def _plain(value: Any) -> Any:
    """YAML 1.1 turns ``2024-01-01`` into a date; the JSON mapping wants the string back."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (an empty document)"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


# --- locating a parse error ---------------------------------------------------------------


def _find_problem(
    desc: Any, data: Any, path: list[PathToken]
) -> tuple[list[PathToken], str] | None:
    """Find the first element of ``data`` that does not parse as ``desc``, with its path.

    ``json_format`` reports the location only in free text and not for every kind of error,
    so the document is walked here and each leaf parsed on its own.
    """
    if not isinstance(data, Mapping):
        return path, f"expected an object, got {_kind(data)}"
    fields: dict[str, descriptor.FieldDescriptor] = {}
    for f in desc.fields:
        fields[f.name] = f
        fields[f.json_name] = f
    for key, value in data.items():
        here = [*path, str(key)]
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(f.name for f in desc.fields)
            return here, f"unknown field {key!r} (expected one of: {known})"
        if value is None:
            continue  # null means unset in the JSON mapping
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            if not isinstance(value, Mapping):
                return here, f"expected an object, got {_kind(value)}"
            for k, v in value.items():
                if (problem := _leaf_problem(desc, key, {k: v})) is not None:
                    return [*here, str(k)], problem
        elif _is_repeated(field):
            if not isinstance(value, list):
                return here, f"expected a list, got {_kind(value)}"
            for i, item in enumerate(value):
                if nested is not None and not nested.full_name.startswith("google.protobuf."):
                    found = _find_problem(nested, item, [*here, i])
                    if found is not None:
                        return found
                elif (problem := _leaf_problem(desc, key, [item])) is not None:
                    return [*here, i], problem
        elif nested is not None and not nested.full_name.startswith("google.protobuf."):
            found = _find_problem(nested, value, here)
            if found is not None:
                return found
        elif (problem := _leaf_problem(desc, key, value)) is not None:
            return here, problem
    return None


def _leaf_problem(desc: Any, key: str, value: Any) -> str | None:
    msg = message_factory.GetMessageClass(desc)()
    try:
        json_format.ParseDict({key: value}, msg)
    except json_format.ParseError as e:
        return _clean(str(e))
    return None


_NESTED = re.compile(r"^(Failed to parse \w+ field: )+")
_LOCATION = re.compile(r"\s+at\s+\"?[\w.\[\]]+\"?\.*$")


def _clean(message: str) -> str:
    """Drop json_format's nesting prefixes and its location suffix: the path says where."""
    first = message.split("\n", 1)[0]
    return _LOCATION.sub("", _NESTED.sub("", first)).rstrip(".") or message


def _format_path(path: Sequence[PathToken]) -> str:
    out = ""
    for token in path:
        out += f"[{token}]" if isinstance(token, int) else (f".{token}" if out else token)
    return out


def _yaml_line(node: yaml.Node | None, path: Sequence[PathToken]) -> int:
    """1-based line of the YAML node at ``path``, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else 0
    for token in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            names = {token, _camel(token)} if isinstance(token, str) else {token}
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) in names:
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(token, int)
            and token < len(node.value)
        ):
            child = node.value[token]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_FIELD_TOKEN = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]|\[(['\"])(.*?)\3\]")
_API_PREFIXES = ("pipeline_version.spec.", "spec.")


def field_line(path: str | os.PathLike[str], field: str) -> int:
    """The line of a pipeline file where an API field path points, for error messages.

    Args:
        path: The YAML or JSON pipeline file.
        field: A field path as the server reports it, such as
            ``pipeline_version.spec.nodes[2].depends_on[0]``; the request prefix is dropped.

    Returns:
        The 1-based line of the element (or of its nearest existing parent); 0 when the file
        cannot be read or the path is not inside the spec.
    """
    for prefix in _API_PREFIXES:
        if field.startswith(prefix):
            field = field[len(prefix) :]
            break
    else:
        return 0
    tokens: list[PathToken] = []
    for m in _FIELD_TOKEN.finditer(field):
        name, index, _, key = m.groups()
        tokens.append(int(index) if index is not None else (name if name is not None else key))
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return 0
    return _yaml_line(root, tokens) if root is not None else 0


# --- text and files -----------------------------------------------------------------------


def loads_spec(
    text: str, *, format: Format = "yaml", source: str = ""
) -> pipeline_spec_pb2.PipelineSpec:
    """Parse a pipeline document held in a string.

    Args:
        text: The document.
        format: ``yaml`` (also reads JSON, a subset of YAML) or ``json``.
        source: Where it came from, for error messages.

    Raises:
        SpecError: Bad syntax, or an element that is not part of a PipelineSpec.
    """
    if format == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"invalid JSON: {e.msg}", source=source, line=e.lineno) from None
        return spec_from_dict(data, source=source)
    if format != "yaml":
        raise ValueError(f"format must be 'yaml' or 'json', not {format!r}")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        line = mark.line + 1 if mark is not None else 0
        raise SpecError(f"invalid YAML: {problem}", source=source, line=line) from None
    return spec_from_dict(data, source=source, _root=root)


def load_spec(path: str | os.PathLike[str]) -> pipeline_spec_pb2.PipelineSpec:
    """Read a pipeline file: ``.json`` as JSON, anything else as YAML.

    Raises:
        SpecError: The file is unreadable or not a valid PipelineSpec; the message names the
            file, the line and the JSON path.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read the file: {e.strerror or e}", source=str(p)) from None
    return loads_spec(text, format=_format_of(p, None), source=str(p))


def dumps_spec(spec: SpecLike, format: Format = "yaml") -> str:
    """The spec as a YAML or JSON document, snake_case keys, ending with a newline."""
    data = spec_to_dict(as_spec(spec))
    if format == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if format != "yaml":
        raise ValueError(f"format must be 'yaml' or 'json', not {format!r}")
    return yaml.dump(data, Dumper=SpecDumper, sort_keys=False, allow_unicode=True)


def dump_spec(
    spec: SpecLike, path_or_stream: str | os.PathLike[str] | IO[str], format: Format | None = None
) -> None:
    """Write a spec as a pipeline file that :func:`load_spec` reads back identically.

    Args:
        spec: A PipelineSpec, a :class:`raypipe.Pipeline` or a dict.
        path_or_stream: A path, or an open text stream.
        format: ``yaml`` or ``json``; by default from the path's extension (``.json`` is JSON,
            anything else YAML), YAML for a stream.
    """
    if isinstance(path_or_stream, io.IOBase) or hasattr(path_or_stream, "write"):
        stream: IO[str] = path_or_stream  # type: ignore[assignment]
        stream.write(dumps_spec(spec, format or "yaml"))
        return
    p = Path(path_or_stream)  # type: ignore[arg-type]
    p.write_text(dumps_spec(spec, _format_of(p, format)), encoding="utf-8")


def _format_of(path: Path, explicit: Format | None) -> Format:
    if explicit is not None:
        return explicit
    return "json" if path.suffix.lower() == ".json" else "yaml"


class SpecDumper(yaml.SafeDumper):
    """Short lists of scalars (``depends_on: [load, split]``) in flow style, the rest in block
    style, so that a pipeline file reads like one written by hand."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    scalars = all(isinstance(v, str | int | float | bool) for v in data)
    flow = scalars and len(data) <= 8 and sum(len(str(v)) for v in data) <= 60
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


SpecDumper.add_representer(list, _represent_list)
