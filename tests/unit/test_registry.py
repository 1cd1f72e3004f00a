"""The node-type registry, plugin loading through real entry points, and the noop type."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ray_nodes.node import ArtifactKind, NodeContext, NodeType, ParamProblem
from ray_nodes.nodes.noop import NoopNode
from ray_nodes.registry import (
    BUILTIN_NODE_TYPES,
    NodeRegistry,
    NodeTypeError,
    UnknownNodeTypeError,
    default_registry,
)


class Scorer(NodeType):
    """Scores a model."""

    type_name: ClassVar[str] = "scorer"
    parameter_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
        "required": ["low"],
        "additionalProperties": False,
    }
    inputs: ClassVar[tuple[ArtifactKind, ...]] = (ArtifactKind.MODEL,)
    output: ClassVar[ArtifactKind] = ArtifactKind.METRICS

    @classmethod
    def check_params(cls, params: Any) -> list[ParamProblem]:
        if "high" in params and params["high"] < params["low"]:
            return [ParamProblem("high", "must be at least low")]
        return []


def _ctx(**params: Any) -> NodeContext:
    return NodeContext(
        run_id="r",
        run_name="runs/r",
        pipeline_id="p",
        node_id="n",
        attempt=1,
        params=params,
        num_cpus=1.0,
    )


# -- NodeRegistry ------------------------------------------------------------------------------


def test_register_get_names_contains_and_origin() -> None:
    registry = NodeRegistry()
    assert registry.register(Scorer, origin="my-dist") is Scorer
    registry.register(NoopNode)
    assert registry.get("scorer") is Scorer
    assert registry.names() == ("noop", "scorer")
    assert list(registry) == ["noop", "scorer"]
    assert len(registry) == 2
    assert "scorer" in registry
    assert "nope" not in registry
    assert registry.origin("scorer") == "my-dist"
    assert registry.origin("noop") == "builtin"


def test_get_unknown_suggests_close_matches() -> None:
    registry = NodeRegistry()
    registry.register(NoopNode)
    with pytest.raises(UnknownNodeTypeError, match="did you mean 'noop'") as caught:
        registry.get("nop")
    assert caught.value.suggestions == ["noop"]
    assert isinstance(caught.value, KeyError)


def test_register_rejects_duplicates() -> None:
    registry = NodeRegistry()
    registry.register(NoopNode)

    class Other(NodeType):
        type_name = "noop"

    with pytest.raises(NodeTypeError, match="already registered"):
        registry.register(Other)
    assert registry.get("noop") is NoopNode


@pytest.mark.parametrize("name", ["", "Bad", "1abc", "has-dash", "a" * 64, None])
def test_register_rejects_bad_names(name: Any) -> None:
    cls = type("Bad", (NodeType,), {"type_name": name})
    with pytest.raises(NodeTypeError, match="type_name"):
        NodeRegistry().register(cls)


def test_register_rejects_a_class_without_a_name() -> None:
    cls = type("Nameless", (NodeType,), {})
    with pytest.raises(NodeTypeError, match="type_name"):
        NodeRegistry().register(cls)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"parameter_schema": {"type": "object", "properties": {"a": {"type": 5}}}}, "invalid"),
        ({"parameter_schema": {"type": "array"}}, '"type": "object"'),
        (
            {"parameter_schema": {"type": "object", "properties": {"input_from": {}}}},
            "reserved",
        ),
        ({"inputs": (ArtifactKind.NONE,)}, "inputs"),
        ({"inputs": ("dataset",)}, "inputs"),
        ({"output": "model"}, "output"),
        ({"variadic_inputs": True, "inputs": ()}, "exactly one kind"),
    ],
)
def test_register_rejects_bad_declarations(attrs: dict[str, Any], message: str) -> None:
    cls = type("Bad", (NodeType,), {"type_name": "bad", **attrs})
    with pytest.raises(NodeTypeError, match=message):
        NodeRegistry().register(cls)


@pytest.mark.parametrize("obj", [NodeType, object, int, "ray_nodes.nodes.noop:NoopNode"])
def test_register_rejects_what_is_not_a_node_type(obj: Any) -> None:
    with pytest.raises(NodeTypeError, match="not a NodeType subclass"):
        NodeRegistry().register(obj)


def test_check_params_reports_schema_errors_at_their_keys_then_cross_field_checks() -> None:
    registry = NodeRegistry()
    registry.register(Scorer)
    assert registry.check_params("scorer", {"low": 1.0}) == []
    problems = {
        p.path: p.description for p in registry.check_params("scorer", {"high": "x", "lwo": 1})
    }
    assert problems == {
        "high": "'x' is not of type 'number'",
        "lwo": "unknown parameter; did you mean 'low'?",
        "low": "required",
    }
    # The type's own check runs once the schema is satisfied.
    assert registry.check_params("scorer", {"low": 2.0, "high": 1.0}) == [
        ParamProblem("high", "must be at least low")
    ]


def test_builtins_are_listed_once_as_import_paths() -> None:
    assert "ray_nodes.nodes.noop:NoopNode" in BUILTIN_NODE_TYPES
    registry = NodeRegistry()
    registry.load_builtins()
    assert len(registry) == len(BUILTIN_NODE_TYPES)
    assert registry.origin("noop") == "builtin"


def test_default_registry_is_process_wide_and_has_the_builtins() -> None:
    registry = default_registry()
    assert default_registry() is registry
    assert registry.get("noop") is NoopNode
    assert registry.origin("noop") == "builtin"


def test_default_registry_concurrent_first_calls_agree() -> None:
    seen: list[NodeRegistry] = []
    threads = [threading.Thread(target=lambda: seen.append(default_registry())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in seen}) == 1


# -- plugins through real entry points ---------------------------------------------------------


def _install_fake_distribution(
    root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Lay out what pip would: a module and a ``*.dist-info`` with ``entry_points.txt``."""
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[raypipe.nodes]\n{lines}")


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("rp_test_plugin_"):
            del sys.modules[name]
    importlib.invalidate_caches()


GOOD_PLUGIN = """
    from ray_nodes.node import ArtifactKind, NodeType

    class EchoNode(NodeType):
        '''Echoes its dataset.'''

        type_name = "echo"
        inputs = (ArtifactKind.DATASET,)
        output = ArtifactKind.DATASET
"""


def test_entry_point_plugins_are_registered_with_their_distribution_as_origin(
    plugin_path: Path,
) -> None:
    _install_fake_distribution(
        plugin_path,
        "raypipe-echo-plugin",
        {"rp_test_plugin_echo": GOOD_PLUGIN},
        {"echo": "rp_test_plugin_echo:EchoNode"},
    )
    registry = NodeRegistry()
    registry.load_builtins()
    registry.load_entry_points()
    assert "echo" in registry
    assert registry.get("echo").__module__ == "rp_test_plugin_echo"
    assert registry.origin("echo") == "raypipe-echo-plugin"
    assert registry.origin("noop") == "builtin"


def test_broken_plugins_are_logged_and_skipped(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _install_fake_distribution(
        plugin_path,
        "raypipe-mixed-plugins",
        {
            "rp_test_plugin_good": GOOD_PLUGIN,
            "rp_test_plugin_raises": "raise RuntimeError('boom at import')\n",
            "rp_test_plugin_notatype": "NotAType = 42\n",
            "rp_test_plugin_clash": """
                from ray_nodes.node import NodeType

                class Clash(NodeType):
                    type_name = "noop"
            """,
        },
        {
            "echo": "rp_test_plugin_good:EchoNode",
            "raises": "rp_test_plugin_raises:Anything",
            "missing": "rp_test_plugin_good:DoesNotExist",
            "notatype": "rp_test_plugin_notatype:NotAType",
            "noop": "rp_test_plugin_clash:Clash",
        },
    )
    registry = NodeRegistry()
    registry.load_builtins()
    with caplog.at_level(logging.ERROR, logger="ray_nodes.registry"):
        registry.load_entry_points()
    # The good plugin and the builtins survive the broken ones.
    assert "echo" in registry
    assert registry.get("noop") is NoopNode
    errors = {e.entry_point.split(" = ")[0]: e for e in registry.plugin_errors}
    assert {"raises", "missing", "notatype", "noop"} <= set(errors)
    assert errors["raises"].origin == "raypipe-mixed-plugins"
    assert "boom at import" in errors["raises"].error
    assert "not a NodeType subclass" in errors["notatype"].error
    assert "already registered" in errors["noop"].error
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("raises", "missing", "notatype", "noop"):
        assert f"skipping node-type plugin {name} = " in logged


# -- noop --------------------------------------------------------------------------------------


def test_noop_declarations() -> None:
    assert NoopNode.type_name == "noop"
    assert NoopNode.inputs == (ArtifactKind.ANY,)
    assert NoopNode.variadic_inputs
    assert NoopNode.output is ArtifactKind.ANY
    assert NoopNode.default_resources.num_cpus == 1.0
    assert "sleep_seconds" in NoopNode.description()
    NodeRegistry().register(NoopNode)  # its declarations pass the registry's checks


def test_noop_params_schema() -> None:
    registry = NodeRegistry()
    registry.register(NoopNode)
    assert registry.check_params("noop", {}) == []
    assert registry.check_params("noop", {"sleep_seconds": 0.5}) == []
    assert [p.path for p in registry.check_params("noop", {"sleep_seconds": -1.0})] == [
        "sleep_seconds"
    ]
    assert [p.path for p in registry.check_params("noop", {"sleep_seconds": "1"})] == [
        "sleep_seconds"
    ]
    assert [p.path for p in registry.check_params("noop", {"sleep": 1.0})] == ["sleep"]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [([], None), (["a"], "a"), ([1, 2, 3], [1, 2, 3])],
)
def test_noop_passes_inputs_through(inputs: list[Any], expected: Any) -> None:
    assert NoopNode().run(_ctx(), inputs) == expected


def test_noop_output_kind_follows_its_inputs() -> None:
    assert NoopNode.output_kind(()) is ArtifactKind.NONE
    assert NoopNode.output_kind((ArtifactKind.MODEL,)) is ArtifactKind.MODEL
    assert NoopNode.output_kind((ArtifactKind.MODEL, ArtifactKind.SPLIT)) is ArtifactKind.ANY


def test_noop_sleeps() -> None:
    start = time.monotonic()
    assert NoopNode().run(_ctx(sleep_seconds=0.05), ["x"]) == "x"
    assert time.monotonic() - start >= 0.05
