"""Cross-run cache keys: equal for what computes the same output, different otherwise."""

from __future__ import annotations

from control_plane.runs.caching import cache_keys
from raypipe.v1 import pipeline_spec_pb2

Spec = pipeline_spec_pb2.PipelineSpec


def spec(
    *, path: str = "a.csv", version: str = "", seed: int | str = 1, cache: bool = True
) -> Spec:
    s = Spec()
    s.parameters["seed"].number_value = 7
    s.parameters["lr"].number_value = 0.1
    load = s.nodes.add(id="load", type="data_loader")
    load.params.update({"path": path})
    load.cache.enabled = cache
    load.cache.cache_version = version
    split = s.nodes.add(id="split", type="train_test_split", depends_on=["load"])
    split.params.update({"random_state": seed, "test_size": 0.25})
    split.cache.enabled = True
    train = s.nodes.add(id="train", type="model_trainer", depends_on=["split"])
    train.params.update({"backend": "xgboost", "hyperparameters": {"eta": "{{ parameters.lr }}"}})
    train.resources.num_cpus = 2
    return s


def test_only_cache_enabled_nodes_get_keys_and_equal_runs_get_equal_keys() -> None:
    first = cache_keys(spec(), {}, run_id="r1")
    assert set(first) == {"load", "split"}
    assert all(len(k) == 64 for k in first.values())
    assert cache_keys(spec(), {}, run_id="r2") == first, "the run id alone changes nothing"
    assert cache_keys(spec(cache=False), {}, run_id="r1") == {"split": first["split"]}, (
        "an uncached upstream still feeds its key to the nodes below it"
    )
    assert cache_keys(Spec(), {}, run_id="r1") == {}


def test_what_changes_a_key() -> None:
    base = cache_keys(spec(), {}, run_id="r")
    moved = cache_keys(spec(path="b.csv"), {}, run_id="r")
    assert moved["load"] != base["load"]
    assert moved["split"] != base["split"], "a change upstream reaches every node below"
    bumped = cache_keys(spec(version="v2"), {}, run_id="r")
    assert bumped["load"] != base["load"]
    assert bumped["split"] != base["split"]
    reseeded = cache_keys(spec(seed=2), {}, run_id="r")
    assert reseeded["load"] == base["load"]
    assert reseeded["split"] != base["split"]


def test_parameters_count_only_where_a_node_uses_them() -> None:
    templated = spec(seed="{{ parameters.seed }}")
    base = cache_keys(templated, {}, run_id="r")
    assert cache_keys(templated, {"seed": 7}, run_id="r") == base, "the default, given explicitly"
    assert cache_keys(templated, {"seed": 8}, run_id="r")["split"] != base["split"]
    assert cache_keys(templated, {"lr": 0.5}, run_id="r") == base, "lr is only the trainer's"


def test_nodes_that_use_run_fields_never_share_a_key() -> None:
    s = spec(seed="{{ run.name }}")
    assert cache_keys(s, {}, run_id="r1")["split"] != cache_keys(s, {}, run_id="r2")["split"]
    assert cache_keys(s, {}, run_id="r1")["load"] == cache_keys(s, {}, run_id="r2")["load"]


def test_resources_and_retries_do_not_change_a_key() -> None:
    s = spec()
    base = cache_keys(s, {}, run_id="r")
    s.nodes[1].resources.num_cpus = 4
    s.nodes[1].retry.max_retries = 3
    s.nodes[1].timeout.seconds = 60
    assert cache_keys(s, {}, run_id="r") == base
