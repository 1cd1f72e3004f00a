"""Custom node types: the example plugin under examples/custom_node registers through the
``raypipe.nodes`` entry-point group (declared in its pyproject.toml), validates and runs."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format

from control_plane.errors import InvalidArgumentError
from control_plane.pipelines.validation import validate_spec
from ray_nodes.node import NodeContext
from ray_nodes.registry import ENTRY_POINT_GROUP, NodeRegistry
from raypipe.v1.pipeline_spec_pb2 import PipelineSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_node"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """What ``pip install examples/custom_node`` would leave behind: the package importable
    and a dist-info whose entry_points.txt is generated from the example's pyproject.toml."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist_info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = [f"[{ENTRY_POINT_GROUP}]"]
    lines += [f"{k} = {v}" for k, v in project["entry-points"][ENTRY_POINT_GROUP].items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield project["name"]
    for name in [m for m in sys.modules if m.startswith("raypipe_example_nodes")]:
        del sys.modules[name]


def test_the_plugin_registers_and_runs(installed: str) -> None:
    registry = NodeRegistry()
    registry.load_builtins()
    registry.load_entry_points()
    assert registry.plugin_errors == []
    assert "log_transform" in registry
    assert registry.origin("log_transform") == installed
    cls = registry.get("log_transform")
    assert "Parameters:" in cls.description()

    frame = pd.DataFrame({"income": [0.0, 9.0, 99.0], "city": ["a", "b", "c"]})
    ctx = NodeContext("r", "runs/r", "p", "log", 1, {"columns": ["income"], "base": "10"}, 1.0)
    out = cls().run(ctx, [frame])
    np.testing.assert_allclose(out["income"], [0.0, 1.0, 2.0])
    assert out["city"].equals(frame["city"])
    ctx.params = {"columns": ["income"], "offset": 0}
    with pytest.raises(ValueError, match=r"'income' has values <= -0\.0"):
        cls().run(ctx, [frame])


def test_the_plugin_takes_part_in_validation(installed: str) -> None:
    registry = NodeRegistry()
    registry.load_builtins()
    registry.load_entry_points()
    problems = registry.check_params("log_transform", {"columns": ["a", "a_log"], "suffix": "_log"})
    assert [(p.path, "overwrite" in p.description) for p in problems] == [("columns[0]", True)]
    problems = registry.check_params("log_transform", {"base": "3"})
    assert {p.path for p in problems} == {"base", "columns"}

    spec = json_format.ParseDict(
        {
            "nodes": [
                {"id": "load", "type": "data_loader", "params": {"path": "x.csv"}},
                {"id": "log", "type": "log_transform", "depends_on": ["load"],
                 "params": {"columns": ["income"]}},
                {"id": "split", "type": "train_test_split", "depends_on": ["log"],
                 "params": {"target": "y"}},
                {"id": "bad", "type": "log_transform", "depends_on": ["split"],
                 "params": {"columns": ["income"]}},
            ]
        },
        PipelineSpec(),
    )  # fmt: skip
    with pytest.raises(InvalidArgumentError) as info:
        validate_spec(spec, registry)
    fields = [v.field for v in info.value.violations]
    assert fields == ["spec.nodes[3].depends_on"]  # a split is not a dataset
