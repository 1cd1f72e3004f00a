"""Durable storage of pipelines, versions, runs and their history, behind a repository interface."""

from control_plane.storage._convert import from_micros, to_micros
from control_plane.storage._owner import DatabaseInUseError

__all__ = ["DatabaseInUseError", "from_micros", "to_micros"]
