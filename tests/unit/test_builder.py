"""The pipeline builder compiles to the PipelineSpec a hand-written file would hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from google.protobuf import duration_pb2, json_format

import raypipe
from raypipe._builder import duration, memory
from raypipe.v1 import pipeline_spec_pb2 as spec_pb2


def churn() -> raypipe.Pipeline:
    p = raypipe.Pipeline("churn", failure_policy="continue_independent")
    data = p.parameter("data", "data/churn.csv")
    p.add("load", "data_loader", path=data)
    p.add("clean", "data_preprocessor", drop_duplicates=True, fill_missing="mean", num_cpus=2)
    split = p.add("split", "train_test_split", target="churned", test_size=0.2)
    p.add("scale", "feature_scaler", method="standard")
    p.add(
        "train",
        "model_trainer",
        backend="xgboost",
        hyperparameters={"max_depth": 4, "eta": 0.3},
        num_gpus=1,
        memory_bytes="4GiB",
        gpu_policy="preferred",
        accelerator_type="A100",
        retry={"max_retries": 2, "initial_backoff": 1.5},
        timeout="30m",
        cache="v2",
    )
    p.add("evaluate", "model_evaluator", depends_on=["train", split])
    return p


def test_compiles_to_the_expected_spec() -> None:
    expected = json_format.ParseDict(
        {
            "failure_policy": "FAILURE_POLICY_CONTINUE_INDEPENDENT",
            "parameters": {"data": "data/churn.csv"},
            "nodes": [
                {"id": "load", "type": "data_loader", "params": {"path": "{{ parameters.data }}"}},
                {
                    "id": "clean",
                    "type": "data_preprocessor",
                    "depends_on": ["load"],
                    "params": {"drop_duplicates": True, "fill_missing": "mean"},
                    "resources": {"num_cpus": 2},
                },
                {
                    "id": "split",
                    "type": "train_test_split",
                    "depends_on": ["clean"],
                    "params": {"target": "churned", "test_size": 0.2},
                },
                {
                    "id": "scale",
                    "type": "feature_scaler",
                    "depends_on": ["split"],
                    "params": {"method": "standard"},
                },
                {
                    "id": "train",
                    "type": "model_trainer",
                    "depends_on": ["scale"],
                    "params": {
                        "backend": "xgboost",
                        "hyperparameters": {"max_depth": 4, "eta": 0.3},
                    },
                    "resources": {
                        "num_gpus": 1,
                        "memory_bytes": 4 * 1024**3,
                        "accelerator_type": "A100",
                        "gpu_policy": "GPU_POLICY_PREFERRED",
                    },
                    "retry": {"max_retries": 2, "initial_backoff": "1.5s"},
                    "timeout": "1800s",
                    "cache": {"enabled": True, "cache_version": "v2"},
                },
                {
                    "id": "evaluate",
                    "type": "model_evaluator",
                    "depends_on": ["train", "split"],
                },
            ],
        },
        spec_pb2.PipelineSpec(),
    )
    assert churn().to_spec() == expected


def test_chaining_and_explicit_roots() -> None:
    p = raypipe.Pipeline("diamond")
    start = p.add("start", "noop")
    p.add("left", "noop")  # chained to start
    p.add("right", "noop", depends_on=start)  # a single id is one dependency
    p.add("join", "noop", depends_on=["left", "right"])
    p.add("other_root", "noop", depends_on=[])
    deps = {n.id: list(n.depends_on) for n in p.to_spec().nodes}
    assert deps == {
        "start": [],
        "left": ["start"],
        "right": ["start"],
        "join": ["left", "right"],
        "other_root": [],
    }
    assert p.node_ids == ("start", "left", "right", "join", "other_root")
    assert len(p) == 5
    assert "join" in p
    assert "nope" not in p


def test_params_that_clash_with_options() -> None:
    p = raypipe.Pipeline("x")
    p.add("a", "custom", params={"timeout": 5, "retry": "never"}, timeout=10, size=3)
    node = p.node("a")
    assert dict(node.params) == {"timeout": 5, "retry": "never", "size": 3}
    assert node.timeout.seconds == 10
    with pytest.raises(ValueError, match="params given twice: size"):
        p.add("b", "custom", params={"size": 1}, size=2)


def test_parameters_and_values() -> None:
    p = raypipe.Pipeline("x")
    assert p.parameter("lr", 0.1) == "{{ parameters.lr }}"
    p.parameter("layers", [64, 32])
    p.parameter("required")
    p.add("a", "noop", path=Path("data/x.csv"), pair=(1, 2))
    spec = p.to_spec()
    assert spec.parameters["lr"].number_value == 0.1
    assert spec.parameters["required"].WhichOneof("kind") == "null_value"
    assert json_format.MessageToDict(spec.nodes[0].params) == {"path": "data/x.csv", "pair": [1, 2]}
    with pytest.raises(ValueError, match="declared already"):
        p.parameter("lr", 1)
    with pytest.raises(ValueError, match="not a JSON value"):
        p.add("b", "noop", bad=object())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.add("a", "noop"), "added already"),
        (lambda p: p.add("b", "noop", depends_on=["zzz"]), "depends on 'zzz', which is not added"),
        (lambda p: p.add("b", "noop", depends_on=["b"]), "cannot depend on itself"),
        (lambda p: p.add("b", "noop", depends_on=["a", "a"]), "twice"),
        (lambda p: p.add("", "noop"), "needs an id and a type"),
        (lambda p: p.add("b", "noop", memory_bytes="lots"), "not a memory size"),
        (lambda p: p.add("b", "noop", gpu_policy="sometimes"), "not one of: required, preferred"),
        (lambda p: p.add("b", "noop", num_cpus=-1), "non-negative"),
        (lambda p: p.add("b", "noop", timeout="soon"), "not a duration"),
        (lambda p: p.add("b", "noop", retry=-1), "must not be negative"),
        (lambda p: p.add("b", "noop", retry={"max_retries": "x"}), "retry"),
        (lambda p: p.add("b", "noop", cache={"bogus": 1}), "cache"),
    ],
)
def test_wrong_usage_fails_at_once(call, message: str) -> None:  # type: ignore[no-untyped-def]
    p = raypipe.Pipeline("x")
    p.add("a", "noop")
    with pytest.raises(ValueError, match=message):
        call(p)
    assert p.node_ids == ("a",), "a failed add leaves the builder as it was"


def test_failure_policy_names() -> None:
    assert raypipe.Pipeline("x").failure_policy == spec_pb2.FAILURE_POLICY_UNSPECIFIED
    p = raypipe.Pipeline("x", failure_policy="FAILURE_POLICY_FAIL_FAST")
    assert p.failure_policy == spec_pb2.FAILURE_POLICY_FAIL_FAST
    p.failure_policy = "continue_independent"
    assert p.to_spec().failure_policy == spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT
    with pytest.raises(ValueError, match="fail_fast, continue_independent"):
        p.failure_policy = "maybe"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("4GiB", 4 * 1024**3),
        ("4Gi", 4 * 1024**3),
        ("4gib", 4 * 1024**3),
        ("512 MiB", 512 * 1024**2),
        ("1.5GB", 1_500_000_000),
        ("2G", 2_000_000_000),
        ("10KB", 10_000),
        ("1TiB", 1024**4),
    ],
)
def test_memory_sizes(text: int | str, expected: int) -> None:
    assert memory(text) == expected


@pytest.mark.parametrize(
    ("value", "seconds", "nanos"),
    [
        (30, 30, 0),
        (1.5, 1, 500_000_000),
        ("30s", 30, 0),
        ("500ms", 0, 500_000_000),
        ("5m", 300, 0),
        ("1h30m", 5400, 0),
        ("2d", 172_800, 0),
        (dt.timedelta(minutes=2, milliseconds=5), 120, 5_000_000),
        (duration_pb2.Duration(seconds=7), 7, 0),
    ],
)
def test_durations(value: object, seconds: int, nanos: int) -> None:
    d = duration(value)  # type: ignore[arg-type]
    assert (d.seconds, d.nanos) == (seconds, nanos)


def test_round_trip_through_spec_and_files(tmp_path: Path) -> None:
    p = churn()
    again = raypipe.Pipeline.from_spec(p.to_spec(), "churn")
    assert again == p
    assert raypipe.loads_spec(p.to_yaml()) == p.to_spec()
    assert raypipe.loads_spec(p.to_json(), format="json") == p.to_spec()
    p.save(tmp_path / "churn.yaml")
    loaded = raypipe.Pipeline.from_file(tmp_path / "churn.yaml")
    assert loaded.name == "churn"
    assert loaded == p
    assert p.to_dict()["nodes"][4]["resources"]["memory_bytes"] == 4 * 1024**3


def test_from_spec_continues_the_chain() -> None:
    p = raypipe.Pipeline.from_spec({"nodes": [{"id": "a", "type": "noop"}]}, "x")
    p.add("b", "noop")
    assert list(p.node("b").depends_on) == ["a"]
    with pytest.raises(ValueError, match="twice"):
        raypipe.Pipeline.from_spec({"nodes": [{"id": "a"}, {"id": "a"}]}, "x")


def test_to_spec_is_a_snapshot() -> None:
    p = raypipe.Pipeline("x")
    p.add("a", "noop")
    spec = p.to_spec()
    p.add("b", "noop")
    spec.nodes[0].type = "changed"
    assert len(spec.nodes) == 1
    assert p.node("a").type == "noop"
