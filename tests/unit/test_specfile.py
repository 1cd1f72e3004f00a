"""YAML/JSON pipeline files: the protobuf JSON mapping of PipelineSpec, read and written both
ways without loss, with errors that name the file, the line and the JSON path."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

import raypipe
from raypipe.v1 import pipeline_spec_pb2 as spec_pb2

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"

FULL = """\
# every kind of field: Struct params, Values, Durations, enums by name, int64, doubles
failure_policy: FAILURE_POLICY_CONTINUE_INDEPENDENT
parameters:
  lr: 0.05
  epochs: 10
  name: churn
  flags: {fast: true, tags: [a, b], nothing: null}
nodes:
  - id: load
    type: data_loader
    params: {path: data/churn.csv, columns: [a, b, c], options: {sep: ";"}}
  - id: train
    type: model_trainer
    display_name: Train XGBoost
    depends_on: [load]
    params:
      backend: xgboost
      random_state: 42
      hyperparameters: {eta: "{{ parameters.lr }}", max_depth: 6, subsample: 0.8}
    resources:
      num_cpus: 0.5
      num_gpus: 1
      memory_bytes: 17179869184
      accelerator_type: A100
      gpu_policy: GPU_POLICY_PREFERRED
    retry:
      max_retries: 3
      initial_backoff: 1.5s
      backoff_multiplier: 2
      max_backoff: 60s
      retry_on: [ConnectionError]
    timeout: 30s
    cache: {enabled: true, cache_version: v2}
"""


def test_full_document_round_trips_exactly(tmp_path: Path) -> None:
    spec = raypipe.loads_spec(FULL)
    train = spec.nodes[1]
    assert train.timeout.seconds == 30
    assert train.retry.initial_backoff.nanos == 500_000_000
    assert train.retry.max_backoff.seconds == 60
    assert train.resources.memory_bytes == 16 * 1024**3
    assert train.resources.gpu_policy == spec_pb2.GPU_POLICY_PREFERRED
    assert spec.failure_policy == spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT
    assert spec.parameters["flags"].struct_value["nothing"] is None

    for name in ("spec.yaml", "spec.json"):
        raypipe.dump_spec(spec, tmp_path / name)
        assert raypipe.load_spec(tmp_path / name) == spec, name
    # Writing what was read gives the same text again: a stable, reviewable file.
    text = raypipe.dumps_spec(spec)
    assert raypipe.dumps_spec(raypipe.loads_spec(text)) == text


def test_map_and_struct_keys_are_written_in_one_order_whatever_order_they_were_made_in() -> None:
    keys = [f"k{i:02d}" for i in range(40)]
    texts = set()
    for order in (keys, keys[::-1], keys[1::2] + keys[::2]):
        spec = spec_pb2.PipelineSpec()
        for k in order:
            spec.parameters[k].string_value = k
        node = spec.nodes.add(id="n", type="noop")
        node.params.update({k: {k2: 1 for k2 in order if k2 < "k05"} for k in order})
        texts.add(raypipe.dumps_spec(spec))
        texts.add(raypipe.dumps_spec(spec, "json"))
    assert len(texts) == 2, "one YAML text and one JSON text"
    data = yaml.safe_load(next(t for t in texts if not t.startswith("{")))
    assert list(data["parameters"]) == sorted(keys)
    assert list(data["nodes"][0]["params"]) == sorted(keys)


def test_written_files_read_naturally() -> None:
    data = yaml.safe_load(raypipe.dumps_spec(raypipe.loads_spec(FULL)))
    train = data["nodes"][1]
    assert train["params"]["random_state"] == 42, "whole numbers stay integers"
    assert train["resources"]["memory_bytes"] == 17179869184, "int64 is a number, not a string"
    assert train["timeout"] == "30s"
    assert train["retry"]["max_backoff"] == "60s"
    assert train["depends_on"] == ["load"]
    assert "dependsOn" not in train, "snake_case keys"
    assert "depends_on: [load]" in raypipe.dumps_spec(raypipe.loads_spec(FULL))


def test_camel_case_and_snake_case_are_the_same() -> None:
    camel = {
        "failurePolicy": "FAILURE_POLICY_FAIL_FAST",
        "nodes": [
            {"id": "a", "type": "noop"},
            {
                "id": "b",
                "type": "noop",
                "dependsOn": ["a"],
                "displayName": "B",
                "resources": {
                    "numCpus": 2,
                    "memoryBytes": "1024",
                    "gpuPolicy": "GPU_POLICY_REQUIRED",
                },
                "retry": {"maxRetries": 1, "initialBackoff": "2s"},
            },
        ],
    }
    snake = {
        "failure_policy": "FAILURE_POLICY_FAIL_FAST",
        "nodes": [
            {"id": "a", "type": "noop"},
            {
                "id": "b",
                "type": "noop",
                "depends_on": ["a"],
                "display_name": "B",
                "resources": {
                    "num_cpus": 2,
                    "memory_bytes": 1024,
                    "gpu_policy": "GPU_POLICY_REQUIRED",
                },
                "retry": {"max_retries": 1, "initial_backoff": "2s"},
            },
        ],
    }
    assert raypipe.spec_from_dict(camel) == raypipe.spec_from_dict(snake)
    assert raypipe.loads_spec(json.dumps(camel), format="json") == raypipe.spec_from_dict(snake)


def test_yaml_dates_stay_strings() -> None:
    spec = raypipe.loads_spec("parameters: {since: 2024-01-31}\nnodes: []\n")
    assert spec.parameters["since"].string_value == "2024-01-31"


def test_dump_to_a_stream_and_formats() -> None:
    spec = raypipe.loads_spec(FULL)
    out = io.StringIO()
    raypipe.dump_spec(spec, out, format="json")
    assert json_format.ParseDict(json.loads(out.getvalue()), spec_pb2.PipelineSpec()) == spec
    with pytest.raises(ValueError, match="yaml' or 'json"):
        raypipe.dumps_spec(spec, "toml")  # type: ignore[arg-type]


def test_spec_to_dict_is_plain_data() -> None:
    data = raypipe.spec_to_dict(raypipe.loads_spec(FULL))
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    ("document", "line", "path", "problem"),
    [
        (
            "nodes:\n  - id: a\n    retry:\n      initialBackoff: soon\n",
            4,
            "nodes[0].retry.initialBackoff",
            'Duration must end with letter "s"',
        ),
        (
            "nodes:\n  - id: a\n  - id: b\n    bogus: 1\n",
            4,
            "nodes[1].bogus",
            "unknown field 'bogus'",
        ),
        ("failure_policy: SOMETIMES\n", 1, "failure_policy", "Invalid enum value SOMETIMES"),
        (
            "nodes:\n  - id: a\n    resources: {memory_bytes: 4GiB}\n",
            3,
            "nodes[0].resources.memory_bytes",
            "4GiB",
        ),
        ("nodes: [a]\n", 1, "nodes[0]", "expected an object, got a str"),
        ("nodes:\n  - id: a\n    depends_on: b\n", 3, "nodes[0].depends_on", "expected a list"),
        ("parameters: [1, 2]\n", 1, "parameters", "expected an object"),
        ("nodes:\n  - id: a\n    timeout: 5\n", 3, "nodes[0].timeout", ""),
    ],
)
def test_errors_name_file_line_and_path(
    tmp_path: Path, document: str, line: int, path: str, problem: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(document)
    with pytest.raises(raypipe.SpecError) as info:
        raypipe.load_spec(f)
    error = info.value
    assert (error.source, error.line, error.path) == (str(f), line, path)
    assert problem in error.problem
    assert str(error).startswith(f"{f}:{line}: {path}: ")
    assert isinstance(error, ValueError)
    assert isinstance(error, raypipe.RaypipeError)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.yaml", "nodes: [\n", "invalid YAML"),
        ("bad.json", '{"nodes": [}', "invalid JSON"),
        ("empty.yaml", "", "a pipeline spec is a mapping"),
        ("list.yaml", "- a\n- b\n", "got a list"),
    ],
)
def test_syntax_errors(tmp_path: Path, name: str, text: str, problem: str) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(raypipe.SpecError, match=problem) as info:
        raypipe.load_spec(f)
    assert str(f) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(raypipe.SpecError, match="cannot read the file") as info:
        raypipe.load_spec(tmp_path / "nope.yaml")
    assert info.value.source.endswith("nope.yaml")


def test_dict_errors_have_a_path_but_no_file() -> None:
    with pytest.raises(raypipe.SpecError) as info:
        raypipe.spec_from_dict({"nodes": [{"id": "a", "cache": {"enabled": "often"}}]})
    assert info.value.path == "nodes[0].cache.enabled"
    assert info.value.source == ""
    assert info.value.line == 0


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load_and_round_trip(path: Path) -> None:
    spec = raypipe.load_spec(path)
    assert spec.nodes, f"{path.name} has no nodes"
    assert raypipe.loads_spec(raypipe.dumps_spec(spec)) == spec


def test_the_noop_example_is_a_diamond() -> None:
    spec = raypipe.load_spec(EXAMPLES / "noop.yaml")
    deps = {n.id: set(n.depends_on) for n in spec.nodes}
    roots = [n for n, d in deps.items() if not d]
    joins = [n for n, d in deps.items() if len(d) == 2]
    assert len(roots) == 1
    assert len(joins) == 1
    assert {n.type for n in spec.nodes} == {"noop"}
