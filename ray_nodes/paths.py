"""Safe resolution of the paths that node params name.

A pipeline spec comes from a client, so a path in it is untrusted input. Data is read only
from under the data roots the server was started with (``raypipe serve --data-root``) and
written only under the artifact root. Both checks are made twice:

* lexically, on the string as written: ``..`` that climbs out of the root, NUL bytes and,
  for artifacts, absolute paths are refused (validation calls :func:`relative_path_problem`
  and :func:`data_path_problem`, so most mistakes fail at ``CreatePipelineVersion``);
* on the file system when the node runs, after every symlink is resolved, so a link inside a
  root that points outside it is refused too.

Errors name the offending path and the roots, since "permission denied" without them sends
a user hunting through server configuration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ray_nodes.errors import RayNodesError

__all__ = [
    "PathEscapeError",
    "data_path_problem",
    "is_within",
    "relative_path_problem",
    "resolve_artifact_path",
    "resolve_data_path",
]


class PathEscapeError(RayNodesError, ValueError):
    """A path names something outside every root it may use, or is malformed."""


def is_within(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it; both must already be resolved."""
    return path == root or root in path.parents


def _common_problem(path: str) -> str | None:
    if not path:
        return "must not be empty"
    if "\x00" in path:
        return "must not contain NUL bytes"
    return None


def _climbs_out(path: str) -> bool:
    """Whether a relative path's ``..`` parts climb above its starting directory."""
    depth = 0
    for part in PurePosixPath(path.replace("\\", "/")).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in (".", "/"):
            depth += 1
    return False


def data_path_problem(path: str) -> str | None:
    """Why ``path`` can never be a valid data path, or None when only the file system can tell.

    Absolute paths are allowed (they may lie under a data root); relative ones must not climb
    out of the root with ``..``.
    """
    problem = _common_problem(path)
    if problem is not None:
        return problem
    if not os.path.isabs(path) and _climbs_out(path):
        return f"{path!r} leaves the data root through '..'"
    return None


def relative_path_problem(path: str) -> str | None:
    """Why ``path`` can never be a valid path under the artifact root, or None."""
    problem = _common_problem(path)
    if problem is not None:
        return problem
    if os.path.isabs(path) or PurePosixPath(path).is_absolute() or path.startswith("\\"):
        return f"{path!r} is absolute; give a path relative to the artifact root"
    if _climbs_out(path):
        return f"{path!r} leaves the artifact root through '..'"
    return None


def _roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots) or "(none configured)"


def resolve_data_path(path: str, roots: Sequence[Path | str]) -> Path:
    """The real path of an existing file under one of ``roots``.

    A relative path is tried against each root in order and the first root where it exists
    wins; an absolute path must lie under some root. Symlinks are resolved before the check.

    Raises:
        PathEscapeError: the path is malformed, leaves every root, or no roots are set.
        FileNotFoundError: the path is inside a root but does not exist.
    """
    problem = data_path_problem(path)
    if problem is not None:
        raise PathEscapeError(f"data path {path!r}: {problem}")
    real_roots = [Path(r).resolve() for r in roots]
    if not real_roots:
        raise PathEscapeError(
            f"data path {path!r} cannot be read: the server has no data roots "
            "(start it with --data-root)"
        )
    candidates = [Path(path)] if os.path.isabs(path) else [root / path for root in real_roots]
    escaped: list[Path] = []
    for candidate in candidates:
        real = candidate.resolve()
        if not any(is_within(real, root) for root in real_roots):
            escaped.append(real)
            continue
        if real.exists():
            if not real.is_file():
                raise PathEscapeError(f"data path {path!r} is not a file (resolved to {real})")
            return real
    if escaped:
        raise PathEscapeError(
            f"data path {path!r} resolves to {escaped[0]}, outside every data root "
            f"({_roots_text(real_roots)}); symlinks out of a root are refused too"
        )
    raise FileNotFoundError(
        f"data path {path!r} not found under the data roots ({_roots_text(real_roots)})"
    )


def resolve_artifact_path(
    path: str, artifact_root: str | Path, *, create_parents: bool = True
) -> Path:
    """A path under ``artifact_root`` for writing; parent directories are created.

    Raises:
        PathEscapeError: the path is absolute, climbs out with ``..``, reaches outside the root
            through a symlink, or the artifact root is not a local directory.
    """
    problem = relative_path_problem(path)
    if problem is not None:
        raise PathEscapeError(f"artifact path {path!r}: {problem}")
    root_text = str(artifact_root)
    if not root_text:
        raise PathEscapeError("no artifact root is configured for this run")
    if "://" in root_text and not root_text.startswith("file://"):
        raise PathEscapeError(
            f"artifact root {root_text!r} is not a local directory; this node writes local files"
        )
    root = Path(root_text.removeprefix("file://"))
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    target = (root / path).resolve()
    if not is_within(target, root):
        raise PathEscapeError(
            f"artifact path {path!r} resolves to {target}, outside the artifact root {root}"
        )
    if create_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A symlinked directory created between the check and mkdir would be caught here.
        if not is_within(target.parent.resolve(), root):
            raise PathEscapeError(f"artifact path {path!r} leaves the artifact root {root}")
    return target
