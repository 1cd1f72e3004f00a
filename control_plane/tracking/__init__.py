"""Experiment tracking: every raypipe run recorded as an MLflow run, with its models.

:func:`open_tracker` gives the tracker a control plane uses: :class:`MlflowTracker` for a
tracking URI, :class:`NullTracker` when tracking is off. See docs/tracking.md.
"""

from __future__ import annotations

from pathlib import Path

from control_plane.tracking.base import NullTracker, StoreTracking, Tracker
from control_plane.tracking.mlflow_tracker import MlflowTracker, default_tracking_uri
from ray_nodes.registry import NodeRegistry

__all__ = [
    "MlflowTracker",
    "NullTracker",
    "StoreTracking",
    "Tracker",
    "default_tracking_uri",
    "open_tracker",
]


def open_tracker(
    tracking_uri: str,
    data_dir: Path,
    *,
    retry_for: float = 300.0,
    registry: NodeRegistry | None = None,
    log_root: str = "",
) -> Tracker:
    """The tracker for ``tracking_uri``; empty means tracking is off.

    A local store (``sqlite:``, ``file:`` or a path) keeps new experiments' artifacts under
    ``data_dir/mlruns``; a tracking server decides for itself. ``log_root`` is the artifact
    root the nodes' logs are under; each run's are attached to its MLflow run at the end.
    """
    if not tracking_uri:
        return NullTracker()
    local = not tracking_uri.startswith(("http://", "https://", "databricks"))
    artifact_dir = str(data_dir / "mlruns") if local else None
    return MlflowTracker(
        tracking_uri,
        artifact_dir=artifact_dir,
        retry_for=retry_for,
        registry=registry,
        log_root=log_root,
    )
