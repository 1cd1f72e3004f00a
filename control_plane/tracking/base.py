"""The tracker seam: what the control plane tells an experiment tracker about its runs.

The :class:`~control_plane.runs.RunSupervisor` calls these hooks at run launch, after each
batch of engine events is stored, and at the terminal state. A tracker must return at once
(it records in the background) and must never raise into the caller: tracking is a record of
the run, never a reason for it to fail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ray_nodes.engine import EngineEvent
from raypipe.v1 import pipeline_spec_pb2, run_pb2

__all__ = ["NullTracker", "StoreTracking", "Tracker"]

#: How a tracker stores what it learnt about a run (its TrackingInfo, replaced whole).
StoreTracking = Callable[[str, run_pb2.TrackingInfo], None]


class Tracker(Protocol):
    """Records raypipe runs in an experiment tracker."""

    def start(self, store: StoreTracking) -> None:
        """Begin recording; ``store(run_id, info)`` saves a run's TrackingInfo."""

    def run_started(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """A run was stored and handed to the engine (or is about to be)."""

    def run_resumed(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """A restarted control plane follows an active run again."""

    def events(self, run: run_pb2.Run, events: Sequence[EngineEvent]) -> None:
        """Engine events were folded into ``run`` (the stored run after them).

        ``run`` is the control plane's live copy of a followed run, updated in place by the
        next batch: read what the hook needs during the call, copy anything it keeps.
        """

    def run_finished(self, run: run_pb2.Run) -> None:
        """``run`` reached a terminal state."""

    def close(self, timeout: float = 5.0) -> None:
        """Stop, giving pending records up to ``timeout`` seconds to go out."""

    def pending(self) -> int:
        """How many records wait to go out (the raypipe_tracker_queue metric)."""


class NullTracker:
    """The tracker when tracking is off: records nothing."""

    def start(self, store: StoreTracking) -> None:
        """Nothing to start."""

    def run_started(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """Ignored."""

    def run_resumed(self, run: run_pb2.Run, spec: pipeline_spec_pb2.PipelineSpec) -> None:
        """Ignored."""

    def events(self, run: run_pb2.Run, events: Sequence[EngineEvent]) -> None:
        """Ignored."""

    def run_finished(self, run: run_pb2.Run) -> None:
        """Ignored."""

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to stop."""

    def pending(self) -> int:
        """Nothing waits."""
        return 0
