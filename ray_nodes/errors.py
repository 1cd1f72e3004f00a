"""The one error root of ``ray_nodes``: every exception it raises derives from
:class:`RayNodesError`, so a caller can catch what comes from here in one clause.

Each concrete error also keeps the built-in base it always had (``ValueError`` for bad specs,
paths and templates, ``KeyError`` for an unknown node type, ``RuntimeError`` for the local head
and artifact integrity), so existing ``except ValueError`` code goes on working. The control
plane turns the ones a request can cause into field violations where it validates (validation,
the wiring of inputs, templates); any other that reaches an RPC is a bug and answers INTERNAL
(``control_plane.rpc``).
"""

from __future__ import annotations

__all__ = ["RayNodesError"]


class RayNodesError(Exception):
    """The root of every error ray_nodes raises."""
