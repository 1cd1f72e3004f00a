"""The run engine: each run of a pipeline version executes as a Ray task graph, driven by a
detached supervisor actor that lives in Ray, so runs outlive the control plane.

The control plane drives runs through an :class:`Engine` (:class:`RayEngine` on Ray); node
types may return :class:`NodeResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray_nodes.engine.types import (
    ArtifactRef,
    Engine,
    EngineEvent,
    NodeFailure,
    NodeResult,
    NodeState,
    PollResult,
    RunState,
    RunSubmission,
)

if TYPE_CHECKING:
    from ray_nodes.engine.client import RayEngine

__all__ = [
    "ArtifactRef",
    "Engine",
    "EngineEvent",
    "NodeFailure",
    "NodeResult",
    "NodeState",
    "PollResult",
    "RayEngine",
    "RunState",
    "RunSubmission",
]


def __getattr__(name: str) -> Any:
    # The engine's client (with the supervisor, the compiler and the API messages) loads on
    # first use: node types import this package for NodeResult and must stay light.
    if name == "RayEngine":
        from ray_nodes.engine.client import RayEngine

        return RayEngine
    raise AttributeError(f"module 'ray_nodes.engine' has no attribute {name!r}")
