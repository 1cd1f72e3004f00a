"""Resource names: the SDK accepts short ids, full names and resource messages alike.

Only the shape is normalised here (``churn`` -> ``pipelines/churn``); whether an id is valid
is the server's call, so that its error, with the field path, is the one users see.
"""

from __future__ import annotations

from typing import Protocol


class Named(Protocol):
    """Anything with a resource ``name``: a Pipeline, PipelineVersion or Run message, or a
    :class:`raypipe.RunHandle`."""

    @property
    def name(self) -> str: ...


PipelineRef = str | Named
"""A pipeline: its id (``churn``), its name (``pipelines/churn``) or a Pipeline message."""

VersionRef = int | str | Named
"""A version: its number (``3`` or ``"3"``), its name (``pipelines/churn/versions/3``) or a
PipelineVersion message."""

RunRef = str | Named
"""A run: its id, its name (``runs/abc``), a Run message or a RunHandle."""

ScheduleRef = str | Named
"""A schedule: its id, its name (``schedules/nightly``) or a Schedule message."""

PIPELINES = "pipelines/"
RUNS = "runs/"
SCHEDULES = "schedules/"


def _text(ref: str | Named, what: str) -> str:
    if isinstance(ref, str):
        return ref
    name = getattr(ref, "name", None)
    if isinstance(name, str):
        return name
    raise TypeError(f"expected a {what} id, name or message, got {type(ref).__name__}")


def pipeline_name(ref: PipelineRef) -> str:
    """``churn`` or ``pipelines/churn`` (or a message naming it) -> ``pipelines/churn``.

    A version name is reduced to its pipeline, so a PipelineVersion works too.
    """
    text = _text(ref, "pipeline")
    if not text.startswith(PIPELINES):
        return PIPELINES + text
    parts = text.split("/")
    if len(parts) == 4 and parts[2] == "versions":
        return "/".join(parts[:2])
    return text


def pipeline_id(ref: PipelineRef) -> str:
    """The id part of a pipeline reference: ``pipelines/churn`` -> ``churn``."""
    return pipeline_name(ref).removeprefix(PIPELINES)


def version_name(pipeline: PipelineRef | None, version: VersionRef) -> str:
    """A version's resource name from a pipeline and a number, or from a full name.

    Args:
        pipeline: The pipeline; may be None when ``version`` is a full name or a message.
        version: ``3``, ``"3"``, ``"pipelines/churn/versions/3"`` or a PipelineVersion.

    Raises:
        ValueError: ``version`` is a bare number and no pipeline was given.
    """
    if isinstance(version, bool):
        raise TypeError("a version is a number or a name, not a bool")
    if isinstance(version, int):
        number = str(version)
    else:
        text = _text(version, "version")
        if text.startswith(PIPELINES):
            return text
        number = text.removeprefix("versions/")
    if pipeline is None:
        raise ValueError(f"version {number!r} needs its pipeline, or give the full version name")
    return f"{pipeline_name(pipeline)}/versions/{number}"


def version_number(name: str) -> int:
    """``pipelines/churn/versions/3`` -> 3; 0 when the name has no number."""
    tail = name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def run_name(ref: RunRef) -> str:
    """``abc`` or ``runs/abc`` (or a Run message or handle) -> ``runs/abc``."""
    text = _text(ref, "run")
    return text if text.startswith(RUNS) else RUNS + text


def schedule_name(ref: ScheduleRef) -> str:
    """``nightly`` or ``schedules/nightly`` (or a Schedule message) -> ``schedules/nightly``."""
    text = _text(ref, "schedule")
    return text if text.startswith(SCHEDULES) else SCHEDULES + text
