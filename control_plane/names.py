"""Resource names of the API (``pipelines/{id}``, ``pipelines/{id}/versions/{n}``,
``runs/{id}``) and the rules for ids and labels, with errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Mapping

from control_plane.errors import FieldViolation, InvalidArgumentError

PIPELINE_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
RUN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
MAX_LABEL_VALUE = 63
MAX_LABELS = 64
MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION = 4096


def pipeline_name(pipeline_id: str) -> str:
    return f"pipelines/{pipeline_id}"


def version_name(pipeline_id: str, number: int) -> str:
    return f"pipelines/{pipeline_id}/versions/{number}"


def run_name(run_id: str) -> str:
    return f"runs/{run_id}"


def check_pipeline_id(value: str, field: str) -> str:
    """Return ``value`` if it is a valid pipeline id, else raise naming ``field``."""
    if not value:
        raise InvalidArgumentError.for_field(field, "is required")
    if not PIPELINE_ID.fullmatch(value):
        raise InvalidArgumentError.for_field(
            field,
            f"{value!r} is not a valid pipeline id: it must match [a-z][a-z0-9-]{{0,62}} "
            "(lowercase letters, digits and hyphens, starting with a letter, at most 63 characters)",
        )
    return value


def parse_pipeline_name(value: str, field: str = "name") -> str:
    """``pipelines/{id}`` -> id."""
    if not value:
        raise InvalidArgumentError.for_field(
            field, "is required (expected pipelines/{pipeline_id})"
        )
    prefix, _, rest = value.partition("/")
    if prefix != "pipelines" or not rest or "/" in rest:
        raise InvalidArgumentError.for_field(
            field, f"{value!r} is not a pipeline name (expected pipelines/{{pipeline_id}})"
        )
    return check_pipeline_id(rest, field)


def parse_version_name(value: str, field: str = "name") -> tuple[str, int]:
    """``pipelines/{id}/versions/{n}`` -> (id, n)."""
    expected = "expected pipelines/{pipeline_id}/versions/{n}"
    if not value:
        raise InvalidArgumentError.for_field(field, f"is required ({expected})")
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != "pipelines" or parts[2] != "versions":
        raise InvalidArgumentError.for_field(field, f"{value!r} is not a version name ({expected})")
    pipeline_id = check_pipeline_id(parts[1], field)
    number = parts[3]
    if not number.isdigit() or number.startswith("0") or len(number) > 18:
        raise InvalidArgumentError.for_field(
            field, f"{value!r} has no valid version number: it must be a positive integer"
        )
    return pipeline_id, int(number)


def parse_run_name(value: str, field: str = "name") -> str:
    """``runs/{id}`` -> id."""
    if not value:
        raise InvalidArgumentError.for_field(field, "is required (expected runs/{run_id})")
    prefix, _, rest = value.partition("/")
    if prefix != "runs" or not RUN_ID.fullmatch(rest):
        raise InvalidArgumentError.for_field(
            field, f"{value!r} is not a run name (expected runs/{{run_id}})"
        )
    return rest


def label_violations(labels: Mapping[str, str], field: str) -> list[FieldViolation]:
    """Every problem with a labels map, one violation each."""
    problems: list[FieldViolation] = []
    if len(labels) > MAX_LABELS:
        problems.append(FieldViolation(field, f"has {len(labels)} labels; at most {MAX_LABELS}"))
    for key, value in sorted(labels.items()):
        if not LABEL_KEY.fullmatch(key):
            problems.append(
                FieldViolation(
                    f"{field}[{key!r}]",
                    "label keys must match [a-z][a-z0-9_.-]{0,62}",
                )
            )
        if len(value) > MAX_LABEL_VALUE:
            problems.append(
                FieldViolation(
                    f"{field}[{key!r}]", f"label values are at most {MAX_LABEL_VALUE} characters"
                )
            )
    return problems


def text_violations(value: str, field: str, limit: int) -> list[FieldViolation]:
    """A violation if ``value`` is longer than ``limit`` characters."""
    if len(value) > limit:
        return [FieldViolation(field, f"is {len(value)} characters long; at most {limit}")]
    return []


def page_size(value: int, field: str = "page_size") -> int:
    """Reject a negative page size (0 means the server default, applied by storage)."""
    if value < 0:
        raise InvalidArgumentError.for_field(field, f"must not be negative (got {value})")
    return value
