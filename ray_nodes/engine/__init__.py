"""The run engine: each run of a pipeline version executes as a Ray task graph, driven by a
detached supervisor actor that lives in Ray, so runs outlive the control plane.

The control plane uses :class:`RayEngine`; node types may return :class:`NodeResult`.
"""

from __future__ import annotations

from ray_nodes.engine.client import RayEngine
from ray_nodes.engine.types import (
    ArtifactRef,
    EngineEvent,
    NodeFailure,
    NodeResult,
    PollResult,
    RunSubmission,
)

__all__ = [
    "ArtifactRef",
    "EngineEvent",
    "NodeFailure",
    "NodeResult",
    "PollResult",
    "RayEngine",
    "RunSubmission",
]
