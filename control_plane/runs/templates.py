"""What ``{{ run.name }}`` and ``{{ run.scheduled_time }}`` are for a stored run.

One definition, for the submission the engine runs (``RunSubmission.run_name`` and
``scheduled_time``) and for the params recorded in MLflow, so both resolve a node's templates
alike: the run's display name, else its bare id; the nominal fire time in RFC 3339 for a
scheduled run, else empty.
"""

from __future__ import annotations

from raypipe.v1 import run_pb2

__all__ = ["template_values"]


def template_values(run: run_pb2.Run) -> tuple[str, str]:
    """``(run_name, scheduled_time)`` for resolving ``run``'s node templates."""
    run_id = run.name.removeprefix("runs/")
    scheduled = run.scheduled_time.ToJsonString() if run.HasField("scheduled_time") else ""
    return run.display_name or run_id, scheduled
