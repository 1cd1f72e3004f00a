"""The Python SDK against a real control plane: every PipelineService RPC, typed errors with
field violations, auto-paging, apply, the async client; runs where Ray is available."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2

import raypipe
from raypipe.v1 import node_type_pb2, pipeline_spec_pb2, run_pb2
from tests.integration.sdk_fixtures import (  # noqa: F401 - fixtures
    NOOP_EXAMPLE,
    address_fixture,
    run_address_fixture,
    run_sdk_fixture,
    sdk_client_fixture,
)


def diamond(name: str = "demo", pause: float = 0.0) -> raypipe.Pipeline:
    p = raypipe.Pipeline(name)
    p.parameter("pause", pause)
    start = p.add("start", "noop")
    p.add("left", "noop", sleep_seconds="{{ parameters.pause }}", num_cpus=0.5)
    p.add("right", "noop", depends_on=[start], num_cpus=0.5)
    p.add("join", "noop", depends_on=["left", "right"])
    return p


# --- pipelines ------------------------------------------------------------------------------


def test_create_get_list_delete_pipeline(sdk: raypipe.Client) -> None:
    created = sdk.create_pipeline(
        "churn", display_name="Churn", description="weekly model", labels={"team": "ml"}
    )
    assert created.name == "pipelines/churn"
    assert created.display_name == "Churn"
    assert dict(created.labels) == {"team": "ml"}
    assert sdk.get_pipeline("churn") == sdk.get_pipeline("pipelines/churn")
    assert sdk.get_pipeline(created).description == "weekly model"

    sdk.create_pipeline("other")
    assert [p.name for p in sdk.list_pipelines()] == ["pipelines/other", "pipelines/churn"]
    assert [p.name for p in sdk.list_pipelines(filter='labels.team = "ml"')] == ["pipelines/churn"]

    sdk.delete_pipeline("churn")
    with pytest.raises(raypipe.NotFoundError):
        sdk.get_pipeline("churn")


def test_versions_rollback_and_validate(sdk: raypipe.Client) -> None:
    sdk.create_pipeline("demo")
    p = diamond()
    v1 = sdk.create_pipeline_version("demo", p, description="first")
    assert v1.name == "pipelines/demo/versions/1"
    assert v1.version_number == 1
    assert v1.spec == p.to_spec()

    # The same spec as a dict and as a message; the third one stays out of the default.
    p.add("tail", "noop")
    v2 = sdk.create_pipeline_version("pipelines/demo", p.to_dict())
    v3 = sdk.create_pipeline_version("demo", p.to_spec(), keep_default_version=True)
    assert (v2.version_number, v3.version_number) == (2, 3)
    assert v2.spec_digest == v3.spec_digest != v1.spec_digest
    assert sdk.get_pipeline("demo").default_version == v2.name

    assert sdk.get_pipeline_version("demo", 1) == v1
    assert sdk.get_pipeline_version("demo", "1") == v1
    assert sdk.get_pipeline_version(v1.name) == v1
    assert sdk.get_pipeline_version("demo").name == v2.name, "no version: the default"

    listed = list(sdk.list_pipeline_versions("demo", omit_spec=True))
    assert [v.version_number for v in listed] == [3, 2, 1]
    assert not listed[0].HasField("spec")
    assert listed[0].spec_digest == v3.spec_digest

    rolled = sdk.rollback_pipeline("demo", 1)
    assert rolled.default_version == v1.name
    assert sdk.rollback_pipeline("demo", v3.name).default_version == v3.name

    checked = sdk.validate_pipeline_spec(diamond())
    assert checked.spec_digest == v1.spec_digest
    assert checked.topological_order[0] == "start"
    assert checked.topological_order[-1] == "join"


def test_example_file_is_valid(sdk: raypipe.Client) -> None:
    spec = raypipe.load_spec(NOOP_EXAMPLE)
    assert len(sdk.validate_pipeline_spec(spec).topological_order) == len(spec.nodes)


def test_list_node_types(sdk: raypipe.Client) -> None:
    types = {t.type: t for t in sdk.list_node_types()}
    noop = types["noop"]
    assert isinstance(noop, node_type_pb2.NodeType)
    properties = noop.parameter_schema["properties"]
    assert isinstance(properties, struct_pb2.Struct)
    assert "sleep_seconds" in properties
    assert noop.origin == "builtin"


def test_apply_creates_only_what_changed(sdk: raypipe.Client) -> None:
    p = diamond("applied")
    first = sdk.apply(p, description="v1")
    assert (first.pipeline_created, first.version_created) == (True, True)
    assert first.pipeline.default_version == first.version.name

    again = sdk.apply(p)
    assert (again.pipeline_created, again.version_created) == (False, False)
    assert again.version.name == first.version.name

    p.add("tail", "noop")
    changed = sdk.apply(p.to_spec(), pipeline="applied")
    assert (changed.pipeline_created, changed.version_created) == (False, True)
    assert changed.version.version_number == 2
    assert changed.pipeline.default_version == changed.version.name


def test_bad_spec_is_not_applied(sdk: raypipe.Client) -> None:
    cyclic = {
        "nodes": [
            {"id": "a", "type": "noop", "depends_on": ["b"]},
            {"id": "b", "type": "noop", "depends_on": ["a"]},
        ]
    }
    with pytest.raises(raypipe.InvalidArgumentError) as info:
        sdk.apply(cyclic, pipeline="cyclic")
    assert info.value.field_violations[0].field.startswith("spec.nodes[")
    with pytest.raises(raypipe.NotFoundError):
        sdk.get_pipeline("cyclic")


# --- typed errors ---------------------------------------------------------------------------


def test_not_found_and_already_exists(sdk: raypipe.Client) -> None:
    with pytest.raises(raypipe.NotFoundError) as info:
        sdk.get_pipeline("missing")
    error = info.value
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.domain == "raypipe.dev"
    assert error.reason
    assert "missing" in error.message
    with pytest.raises(raypipe.NotFoundError):
        sdk.get_pipeline_version("missing", 1)

    sdk.create_pipeline("taken")
    with pytest.raises(raypipe.AlreadyExistsError) as exists:
        sdk.create_pipeline("taken")
    assert exists.value.domain == "raypipe.dev"


def test_invalid_spec_has_field_violations(sdk: raypipe.Client) -> None:
    sdk.create_pipeline("bad")
    spec = {
        "nodes": [
            {"id": "a", "type": "noop", "depends_on": ["c"]},
            {"id": "b", "type": "noop", "depends_on": ["a"]},
            {"id": "c", "type": "noop", "depends_on": ["b"]},
            {"id": "d", "type": "no_such_type"},
        ]
    }
    with pytest.raises(raypipe.InvalidArgumentError) as info:
        sdk.create_pipeline_version("bad", spec)
    error = info.value
    assert error.domain == "raypipe.dev"
    fields = {v.field: v.description for v in error.field_violations}
    cycle = [f for f, d in fields.items() if "cycle" in d]
    assert cycle, fields
    assert cycle[0].startswith("pipeline_version.spec.nodes[")
    assert any(f.startswith("pipeline_version.spec.nodes[3]") for f in fields), fields
    assert all(isinstance(v, raypipe.FieldViolation) for v in error.field_violations)

    with pytest.raises(raypipe.InvalidArgumentError) as bad_id:
        sdk.create_pipeline("Not_Valid")
    assert [v.field for v in bad_id.value.field_violations] == ["pipeline_id"]

    with pytest.raises(raypipe.InvalidArgumentError) as bad_page:
        list(sdk.list_pipelines(page_size=-1))
    assert bad_page.value.field_violations[0].field == "page_size"


def test_rollback_to_a_version_of_another_pipeline(sdk: raypipe.Client) -> None:
    for name in ("one", "two"):
        sdk.apply(diamond(name))
    with pytest.raises(raypipe.InvalidArgumentError) as info:
        sdk.rollback_pipeline("one", "pipelines/two/versions/1")
    assert info.value.field_violations[0].field == "version"


# --- paging ---------------------------------------------------------------------------------


def test_iterators_walk_every_page(sdk: raypipe.Client) -> None:
    ids = [f"p{i:02d}" for i in range(7)]
    for pipeline_id in ids:
        sdk.create_pipeline(pipeline_id)
    listing = sdk.list_pipelines(page_size=3)
    pages = list(listing.pages())
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert pages[-1].next_page_token == ""
    assert [p.name.split("/")[1] for p in listing] == ids[::-1], "newest first, all pages"

    resumed = sdk.list_pipelines(page_size=3, page_token=pages[0].next_page_token)
    assert [p.name for p in resumed] == [p.name for page in pages[1:] for p in page.items]

    sdk.create_pipeline("versions")
    for i in range(5):
        sdk.create_pipeline_version("versions", diamond(pause=i))
    numbers = [v.version_number for v in sdk.list_pipeline_versions("versions", page_size=2)]
    assert numbers == [5, 4, 3, 2, 1]


# --- the async client -----------------------------------------------------------------------


def test_async_client(address: str) -> None:
    async def scenario() -> None:
        async with raypipe.AsyncClient(address) as client:
            result = await client.apply(diamond("async"))
            assert result.version_created
            await client.create_pipeline("async-two")
            names = [p.name async for p in client.list_pipelines(page_size=1)]
            assert names == ["pipelines/async-two", "pipelines/async"]
            version = await client.get_pipeline_version("async")
            assert version.version_number == 1
            versions = await client.list_pipeline_versions("async").to_list()
            assert [v.name for v in versions] == [version.name]
            assert "noop" in {t.type for t in await client.list_node_types()}
            with pytest.raises(raypipe.NotFoundError):
                await client.get_pipeline("nope")
            with pytest.raises(raypipe.InvalidArgumentError):
                await client.validate_pipeline_spec({"nodes": [{"id": "a", "type": "x"}]})
            await client.delete_pipeline("async-two")

    asyncio.run(scenario())


# --- runs (need Ray) ------------------------------------------------------------------------


def test_run_and_wait(run_sdk: raypipe.Client) -> None:
    run_sdk.apply(diamond("runs-demo"))
    handle = run_sdk.run("runs-demo", parameters={"pause": 0.05}, labels={"k": "v"})
    run = handle.wait(timeout=120)
    assert run.state == run_pb2.Run.STATE_SUCCEEDED
    assert [n.node_id for n in run.nodes] == ["start", "left", "right", "join"]
    assert all(n.state == run_pb2.NodeExecution.STATE_SUCCEEDED for n in run.nodes)
    assert run.parameters["pause"].number_value == 0.05

    fetched = run_sdk.get_run(run.name)
    assert fetched.state == run.state
    listed = list(run_sdk.list_runs(pipeline="runs-demo", states=["succeeded"]))
    assert run.name in [r.name for r in listed]

    events = list(run_sdk.watch(run))
    assert events[0].event.type == run_pb2.RunEvent.TYPE_SNAPSHOT
    assert events[-1].run.state == run_pb2.Run.STATE_SUCCEEDED
    again = list(run_sdk.watch_run(run.name.removeprefix("runs/")))
    assert [e.run.state for e in again][-1] == run_pb2.Run.STATE_SUCCEEDED, "watch_run stays"

    with pytest.raises(raypipe.FailedPreconditionError):
        run_sdk.cancel_run(run)

    with pytest.raises(raypipe.FailedPreconditionError):
        run_sdk.retry_run(run)  # only FAILED or CANCELLED runs are retried


def test_create_run_is_idempotent_and_checks_parameters(run_sdk: raypipe.Client) -> None:
    run_sdk.apply(diamond("idem"))
    first = run_sdk.create_run("idem", request_id="same-request")
    second = run_sdk.create_run("idem", request_id="same-request")
    assert first.name == second.name
    assert run_sdk.create_run("idem", version=1).name != first.name

    with pytest.raises(raypipe.InvalidArgumentError) as info:
        run_sdk.create_run("idem", parameters={"undeclared": 1})
    assert "undeclared" in info.value.field_violations[0].field
    run_sdk.wait_run(first, timeout=120)


def test_run_of_a_pipeline_without_versions(run_sdk: raypipe.Client) -> None:
    run_sdk.create_pipeline("empty")
    with pytest.raises(raypipe.FailedPreconditionError):
        run_sdk.create_run("empty")


def test_failed_run_raises_run_failed(run_sdk: raypipe.Client) -> None:
    p = raypipe.Pipeline("fails")
    p.add("slow", "noop", sleep_seconds=60, timeout="1s")  # fails by its timeout
    run_sdk.apply(p)
    with pytest.raises(raypipe.RunFailedError) as info:
        run_sdk.run("fails").wait(timeout=120)
    assert info.value.run.state == run_pb2.Run.STATE_FAILED
    assert info.value.run.error.node_id == "slow"

    retried = run_sdk.get_run_handle(info.value.run).retry()
    assert retried.last is not None
    assert retried.last.retry_of == info.value.run.name
    assert retried.wait(timeout=120, raise_on_failure=False).state == run_pb2.Run.STATE_FAILED


def test_spec_enum_names_reach_the_server(sdk: raypipe.Client) -> None:
    p = diamond("enums")
    p.failure_policy = "continue_independent"
    version = sdk.apply(p).version
    assert version.spec.failure_policy == pipeline_spec_pb2.FAILURE_POLICY_CONTINUE_INDEPENDENT


def test_cancel_a_running_run(run_sdk: raypipe.Client) -> None:
    p = raypipe.Pipeline("slow")
    p.add("nap", "noop", sleep_seconds=60)
    run_sdk.apply(p)
    handle = run_sdk.run("slow")
    for response in handle.watch(timeout=60):
        if response.run.state == run_pb2.Run.STATE_RUNNING:
            break
    cancelled = handle.cancel()
    assert cancelled.state in (run_pb2.Run.STATE_CANCELLING, run_pb2.Run.STATE_CANCELLED)
    with pytest.raises(raypipe.RunFailedError):
        handle.wait(timeout=60)
    assert handle.last is not None
    assert handle.last.state == run_pb2.Run.STATE_CANCELLED


def test_async_run_and_watch(run_address: str) -> None:
    async def scenario() -> list[run_pb2.Run.State]:
        async with raypipe.AsyncClient(run_address) as client:
            await client.apply(diamond("async-runs"))
            handle = await client.run("async-runs")
            states = [r.run.state async for r in handle.watch(timeout=120)]
            assert (await handle.wait(timeout=60)).state == run_pb2.Run.STATE_SUCCEEDED
            listed = [r.name async for r in client.list_runs(pipeline="async-runs")]
            assert listed == [handle.name]
            return states

    states = asyncio.run(scenario())
    assert states[-1] == run_pb2.Run.STATE_SUCCEEDED
