"""The arrows that import-linter has no contract type for (the others are in pyproject.toml's
``[tool.importlinter]``, run by ``make lint``): no package imports another package's private
module (``_x``); a private module is for its own package and the packages inside it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "control_plane": ROOT / "control_plane",
    "ray_nodes": ROOT / "ray_nodes",
    "raypipe": ROOT / "clients" / "python" / "raypipe",
}


def _modules() -> Iterator[tuple[str, str, Path]]:
    """(module, the package it is in, path) of every hand-written module."""
    for base in PACKAGES.values():
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base.parent).with_suffix("")
            if "v1" in rel.parts:  # generated
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            module = ".".join(parts)
            package = module if rel.name == "__init__" else ".".join(parts[:-1])
            yield module, package, path


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def private_imports() -> list[str]:
    """``importer -> imported`` for each import of another package's private module."""
    found = []
    for module, package, path in _modules():
        for name in _imported(ast.parse(path.read_text())):
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if package != owner and not package.startswith(owner + "."):
                        found.append(f"{module} -> {name}")
                    break
    return sorted(set(found))


def test_no_package_imports_another_packages_private_module() -> None:
    assert private_imports() == []


def test_the_check_sees_a_private_import(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The check itself can fail: a module reaching into another package's ``_x``."""
    fake = tmp_path / "control_plane"
    (fake / "a").mkdir(parents=True)
    (fake / "b").mkdir()
    (fake / "a" / "__init__.py").write_text("")
    (fake / "a" / "_inner.py").write_text("")
    (fake / "a" / "user.py").write_text("from control_plane.a._inner import x\n")
    (fake / "b" / "__init__.py").write_text("")
    (fake / "b" / "thief.py").write_text("from control_plane.a._inner import x\n")
    monkeypatch.setitem(PACKAGES, "control_plane", fake)
    assert private_imports() == [
        "control_plane.b.thief -> control_plane.a._inner",
        "control_plane.b.thief -> control_plane.a._inner.x",
    ]


def _exception_classes(base: Path) -> Iterator[tuple[str, list[str]]]:
    """(class name, its base names) of every class in ``base`` that looks like an exception."""
    for path in sorted(base.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                yield f"{path.relative_to(ROOT)}:{node.name}", bases


def test_every_ray_nodes_error_derives_from_its_one_root() -> None:
    from ray_nodes.errors import RayNodesError

    found = dict(_exception_classes(PACKAGES["ray_nodes"]))
    assert found, "no exception classes found: the scan is broken"
    rooted = {"RayNodesError"}
    # An error rooted through another ray_nodes error (say a subclass of WiringError) counts.
    for _ in range(3):
        rooted |= {k.rsplit(":", 1)[1] for k, bases in found.items() if rooted & set(bases)}
    unrooted = sorted(k for k in found if k.rsplit(":", 1)[1] not in rooted)
    assert unrooted == [], f"not derived from {RayNodesError.__name__}: {unrooted}"


def test_the_old_paths_of_the_node_types_still_import_with_a_warning() -> None:
    import importlib
    import sys

    import pytest

    import ray_nodes.nodes.model_saver as moved

    sys.modules.pop("ray_nodes.model_saver", None)
    sys.modules.pop("ray_nodes.trainers", None)
    with pytest.warns(DeprecationWarning, match=r"ray_nodes.model_saver moved to ray_nodes.nodes"):
        old = importlib.import_module("ray_nodes.model_saver")
    assert old.load_model is moved.load_model
    with pytest.warns(DeprecationWarning, match=r"ray_nodes.trainers moved"):
        from ray_nodes.trainers import get_backend  # noqa: F401
