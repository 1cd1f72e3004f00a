"""Path resolution under data roots and the artifact root: every way out is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ray_nodes.paths import (
    PathEscapeError,
    data_path_problem,
    relative_path_problem,
    resolve_artifact_path,
    resolve_data_path,
)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two data roots and a directory outside both, each holding a file."""
    a, b, outside = tmp_path / "a", tmp_path / "b", tmp_path / "outside"
    for d in (a, b, outside):
        d.mkdir()
        (d / f"{d.name}.csv").write_text("x\n1\n")
    (a / "sub").mkdir()
    (a / "sub" / "deep.csv").write_text("x\n1\n")
    return a, b, outside


def test_relative_paths_resolve_against_each_root_in_turn(roots: tuple[Path, Path, Path]) -> None:
    a, b, _ = roots
    assert resolve_data_path("a.csv", [a, b]) == (a / "a.csv").resolve()
    assert resolve_data_path("b.csv", [a, b]) == (b / "b.csv").resolve()
    assert resolve_data_path("sub/../sub/deep.csv", [a, b]) == (a / "sub" / "deep.csv").resolve()


def test_absolute_path_inside_a_root_is_allowed(roots: tuple[Path, Path, Path]) -> None:
    a, b, _ = roots
    assert resolve_data_path(str(b / "b.csv"), [a, b]) == (b / "b.csv").resolve()


@pytest.mark.parametrize("path", ["../outside/outside.csv", "sub/../../outside/outside.csv"])
def test_dot_dot_escape_is_refused_with_path_and_roots(
    roots: tuple[Path, Path, Path], path: str
) -> None:
    a, b, _ = roots
    with pytest.raises(PathEscapeError) as info:
        resolve_data_path(path, [a, b])
    assert path in str(info.value)
    assert data_path_problem(path) is not None


def test_absolute_path_outside_every_root_is_refused(roots: tuple[Path, Path, Path]) -> None:
    a, b, outside = roots
    with pytest.raises(PathEscapeError) as info:
        resolve_data_path(str(outside / "outside.csv"), [a, b])
    message = str(info.value)
    assert "outside every data root" in message
    assert str(a.resolve()) in message
    assert str(b.resolve()) in message


def test_symlink_out_of_a_root_is_refused(roots: tuple[Path, Path, Path]) -> None:
    a, b, outside = roots
    os.symlink(outside / "outside.csv", a / "link.csv")
    os.symlink(outside, a / "linkdir")
    with pytest.raises(PathEscapeError, match="symlinks"):
        resolve_data_path("link.csv", [a, b])
    with pytest.raises(PathEscapeError):
        resolve_data_path("linkdir/outside.csv", [a, b])


def test_symlink_within_the_root_is_fine(roots: tuple[Path, Path, Path]) -> None:
    a, _, _ = roots
    os.symlink(a / "sub" / "deep.csv", a / "alias.csv")
    assert resolve_data_path("alias.csv", [a]) == (a / "sub" / "deep.csv").resolve()


def test_missing_file_names_the_roots(roots: tuple[Path, Path, Path]) -> None:
    a, b, _ = roots
    with pytest.raises(FileNotFoundError, match=r"nope\.csv.*not found"):
        resolve_data_path("nope.csv", [a, b])


def test_no_roots_and_malformed_paths(roots: tuple[Path, Path, Path]) -> None:
    a, _, _ = roots
    with pytest.raises(PathEscapeError, match="no data roots"):
        resolve_data_path("a.csv", [])
    with pytest.raises(PathEscapeError, match="NUL"):
        resolve_data_path("a\x00.csv", [a])
    with pytest.raises(PathEscapeError, match="not a file"):
        resolve_data_path("sub", [a])


def test_artifact_paths_stay_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    target = resolve_artifact_path("models/m1/model.json", root)
    assert target == (root / "models" / "m1" / "model.json").resolve()
    assert target.parent.is_dir()
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        assert relative_path_problem(bad) is not None
        with pytest.raises(PathEscapeError):
            resolve_artifact_path(bad, root)


def test_artifact_symlink_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "escape")
    with pytest.raises(PathEscapeError, match="outside the artifact root"):
        resolve_artifact_path("escape/model.json", root)


def test_remote_artifact_roots_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(PathEscapeError, match="not a local directory"):
        resolve_artifact_path("m/model.json", "s3://bucket/artifacts")
    assert resolve_artifact_path("m.json", f"file://{tmp_path}") == (tmp_path / "m.json").resolve()
