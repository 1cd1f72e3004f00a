"""What starting a run asks for: one value for every caller of
:meth:`control_plane.runs.supervisor.RunSupervisor.start_run`, and the parameter check they
share. Light on purpose (no Ray, no storage), so the scheduler can build one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ray_nodes.engine.types import ArtifactRef
from raypipe.v1 import pipeline_spec_pb2

__all__ = ["RunRequest", "undeclared_parameters"]


@dataclass(frozen=True)
class RunRequest:
    """What starting a run asks for, whoever asks: CreateRun, RetryRun, a scheduled fire, a
    trigger or a backfill all start runs with one of these, through
    :meth:`~control_plane.runs.supervisor.RunSupervisor.start_run`.

    Attributes:
        pipeline_id: The pipeline.
        version_number: The version to run; None for the pipeline's default version now.
        parameters: The run's parameter values (JSON values); each must be declared by the
            version's spec.
        display_name, labels: The run's.
        request_id: Idempotency key: the same key again returns the first run.
        schedule, scheduled_time: The schedule and nominal fire time of a scheduled run.
        retry_of: The run a RetryRun retries.
        reuse: Node id -> (the run that produced it, its artifacts): outputs the run reuses
            instead of executing the node (a retry's succeeded nodes).
        refuse_undeclared: A parameter the version does not declare makes the call fail with
            INVALID_ARGUMENT (a caller can fix its request), or, set, stores the run FAILED
            through ``RunSupervisor.refuse`` (a fire: nobody is there to answer, so the
            refusal is shown where runs are looked at).
    """

    pipeline_id: str
    version_number: int | None
    parameters: Mapping[str, object] = field(default_factory=dict)
    display_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""
    schedule: str = ""
    scheduled_time: datetime | None = None
    retry_of: str = ""
    reuse: Mapping[str, tuple[str, tuple[ArtifactRef, ...]]] | None = None
    refuse_undeclared: bool = False


def undeclared_parameters(
    spec: pipeline_spec_pb2.PipelineSpec, parameters: Iterable[str]
) -> list[str]:
    """The names among ``parameters`` that ``spec`` does not declare, sorted."""
    return sorted(set(parameters) - set(spec.parameters))
