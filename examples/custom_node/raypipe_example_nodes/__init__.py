"""An example raypipe plugin: node types registered through the ``raypipe.nodes`` entry points."""

from __future__ import annotations

from raypipe_example_nodes.log_transform import LogTransformNode

__all__ = ["LogTransformNode"]
