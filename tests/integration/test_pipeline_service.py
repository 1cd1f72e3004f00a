"""PipelineService end to end: a real server on a real port, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from control_plane.server import ControlPlane
from control_plane.storage.repository import NewRun
from raypipe.v1 import pipeline_pb2, pipeline_spec_pb2
from raypipe.v1 import pipeline_service_pb2 as pb
from tests.integration.conftest import Api, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def chain_spec(n: int = 3, *, sleep: float = 0.0) -> pipeline_spec_pb2.PipelineSpec:
    """A chain of ``n`` noop nodes."""
    spec = pipeline_spec_pb2.PipelineSpec()
    for i in range(n):
        node = spec.nodes.add(id=f"n{i}", type="noop")
        if sleep:
            node.params.update({"sleep_seconds": sleep})
        if i:
            node.depends_on.append(f"n{i - 1}")
    return spec


def create_pipeline(api: Api, pipeline_id: str, **labels: str) -> pipeline_pb2.Pipeline:
    return api.pipelines.CreatePipeline(
        pb.CreatePipelineRequest(
            pipeline_id=pipeline_id, pipeline=pipeline_pb2.Pipeline(labels=labels)
        )
    ).pipeline


def create_version(
    api: Api, pipeline_id: str, spec: pipeline_spec_pb2.PipelineSpec | None = None, **kw: object
) -> pipeline_pb2.PipelineVersion:
    return api.pipelines.CreatePipelineVersion(
        pb.CreatePipelineVersionRequest(
            parent=f"pipelines/{pipeline_id}",
            pipeline_version=pipeline_pb2.PipelineVersion(spec=spec or chain_spec()),
            **kw,  # type: ignore[arg-type]
        )
    ).pipeline_version


# --- pipelines -------------------------------------------------------------------------------


def test_create_and_get_pipeline(api: Api) -> None:
    created = api.pipelines.CreatePipeline(
        pb.CreatePipelineRequest(
            pipeline_id="churn",
            pipeline=pipeline_pb2.Pipeline(
                display_name="Churn model", description="weekly", labels={"team": "ml"}
            ),
        )
    ).pipeline
    assert created.name == "pipelines/churn"
    assert created.display_name == "Churn model"
    assert created.default_version == ""
    assert created.create_time.seconds > 0
    got = api.pipelines.GetPipeline(pb.GetPipelineRequest(name="pipelines/churn")).pipeline
    assert got == created


def test_duplicate_pipeline_is_already_exists(api: Api) -> None:
    create_pipeline(api, "dup")
    details = expect_error(
        api.pipelines.CreatePipeline,
        pb.CreatePipelineRequest(pipeline_id="dup"),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert "dup" in details.message


@pytest.mark.parametrize(
    ("pipeline_id", "field"),
    [
        ("", "pipeline_id"),
        ("Bad", "pipeline_id"),
        ("1abc", "pipeline_id"),
        ("a" * 64, "pipeline_id"),
    ],
)
def test_bad_pipeline_id(api: Api, pipeline_id: str, field: str) -> None:
    details = expect_error(
        api.pipelines.CreatePipeline, pb.CreatePipelineRequest(pipeline_id=pipeline_id), INVALID
    )
    assert field in details.violations


def test_bad_labels_and_texts_all_reported(api: Api) -> None:
    details = expect_error(
        api.pipelines.CreatePipeline,
        pb.CreatePipelineRequest(
            pipeline_id="ok",
            pipeline=pipeline_pb2.Pipeline(
                display_name="x" * 300, labels={"Bad Key": "v", "k": "v" * 64}
            ),
        ),
        INVALID,
    )
    assert set(details.violations) == {
        "pipeline.display_name",
        "pipeline.labels['Bad Key']",
        "pipeline.labels['k']",
    }


@pytest.mark.parametrize(
    "name", ["", "churn", "pipelines/", "pipelines/Churn", "pipelines/a/b", "runs/x"]
)
def test_malformed_names_are_invalid_argument(api: Api, name: str) -> None:
    details = expect_error(api.pipelines.GetPipeline, pb.GetPipelineRequest(name=name), INVALID)
    assert "name" in details.violations


def test_missing_pipeline_is_not_found(api: Api) -> None:
    details = expect_error(
        api.pipelines.GetPipeline,
        pb.GetPipelineRequest(name="pipelines/nope"),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "nope" in details.message


def test_list_pipelines_pages_newest_first(api: Api) -> None:
    ids = [f"p{i:02d}" for i in range(7)]
    for pid in ids:
        create_pipeline(api, pid)
    seen: list[str] = []
    token = ""
    while True:
        resp = api.pipelines.ListPipelines(pb.ListPipelinesRequest(page_size=3, page_token=token))
        assert len(resp.pipelines) <= 3
        seen += [p.name.split("/")[1] for p in resp.pipelines]
        token = resp.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


def test_list_pipelines_negative_page_size(api: Api) -> None:
    details = expect_error(
        api.pipelines.ListPipelines, pb.ListPipelinesRequest(page_size=-1), INVALID
    )
    assert "page_size" in details.violations


def test_list_pipelines_bad_token(api: Api) -> None:
    details = expect_error(
        api.pipelines.ListPipelines, pb.ListPipelinesRequest(page_token="garbage!"), INVALID
    )
    assert "page_token" in details.violations


def test_list_pipelines_filter_on_labels(api: Api) -> None:
    create_pipeline(api, "a", team="ml", env="prod")
    create_pipeline(api, "b", team="ml")
    create_pipeline(api, "c", team="data", env="prod")

    def ids(flt: str) -> list[str]:
        resp = api.pipelines.ListPipelines(pb.ListPipelinesRequest(filter=flt))
        return sorted(p.name.split("/")[1] for p in resp.pipelines)

    assert ids('labels.team = "ml"') == ["a", "b"]
    assert ids('labels.team = "ml" AND labels.env:*') == ["a"]
    assert ids('labels.team != "ml"') == ["c"]
    details = expect_error(
        api.pipelines.ListPipelines, pb.ListPipelinesRequest(filter="labels.team =="), INVALID
    )
    assert "filter" in details.violations


# --- versions --------------------------------------------------------------------------------


def test_versions_are_numbered_and_become_default(api: Api) -> None:
    create_pipeline(api, "p")
    v1 = create_version(api, "p", chain_spec(2))
    v2 = create_version(api, "p", chain_spec(3))
    assert (v1.name, v1.version_number) == ("pipelines/p/versions/1", 1)
    assert (v2.name, v2.version_number) == ("pipelines/p/versions/2", 2)
    pipeline = api.pipelines.GetPipeline(pb.GetPipelineRequest(name="pipelines/p")).pipeline
    assert pipeline.default_version == v2.name
    assert pipeline.latest_version_number == 2
    v3 = create_version(api, "p", chain_spec(4), keep_default_version=True)
    pipeline = api.pipelines.GetPipeline(pb.GetPipelineRequest(name="pipelines/p")).pipeline
    assert v3.version_number == 3
    assert pipeline.default_version == v2.name
    got = api.pipelines.GetPipelineVersion(pb.GetPipelineVersionRequest(name=v1.name))
    assert got.pipeline_version.spec == chain_spec(2)


def test_spec_digest_is_sha256_of_canonical_json(api: Api) -> None:
    create_pipeline(api, "p")
    spec = chain_spec(3)
    spec.parameters["lr"].number_value = 0.1
    version = create_version(api, "p", spec)
    canonical = json.dumps(
        json_format.MessageToDict(spec, preserving_proto_field_name=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert version.spec_digest == hashlib.sha256(canonical).hexdigest()
    check = api.pipelines.ValidatePipelineSpec(pb.ValidatePipelineSpecRequest(spec=spec))
    assert check.spec_digest == version.spec_digest
    assert list(check.topological_order) == ["n0", "n1", "n2"]


def test_fifty_concurrent_version_creates_have_no_gap(api: Api) -> None:
    create_pipeline(api, "busy")
    with ThreadPoolExecutor(max_workers=50) as pool:
        versions = list(
            pool.map(lambda i: create_version(api, "busy", chain_spec(1 + i % 3)), range(50))
        )
    assert sorted(v.version_number for v in versions) == list(range(1, 51))
    listed = api.pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(parent="pipelines/busy", page_size=100)
    )
    assert [v.version_number for v in listed.pipeline_versions] == list(range(50, 0, -1))


def test_list_versions_pages_newest_first_and_omits_spec(api: Api) -> None:
    create_pipeline(api, "p")
    for _ in range(5):
        create_version(api, "p")
    first = api.pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(parent="pipelines/p", page_size=2, omit_spec=True)
    )
    assert [v.version_number for v in first.pipeline_versions] == [5, 4]
    assert not first.pipeline_versions[0].HasField("spec")
    assert first.pipeline_versions[0].spec_digest
    rest = api.pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(
            parent="pipelines/p", page_size=10, page_token=first.next_page_token, omit_spec=True
        )
    )
    assert [v.version_number for v in rest.pipeline_versions] == [3, 2, 1]
    assert rest.next_page_token == ""
    details = expect_error(
        api.pipelines.ListPipelineVersions,
        pb.ListPipelineVersionsRequest(parent="pipelines/p", page_size=-5),
        INVALID,
    )
    assert "page_size" in details.violations


def test_version_of_missing_pipeline(api: Api) -> None:
    expect_error(
        api.pipelines.CreatePipelineVersion,
        pb.CreatePipelineVersionRequest(
            parent="pipelines/ghost",
            pipeline_version=pipeline_pb2.PipelineVersion(spec=chain_spec()),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    expect_error(
        api.pipelines.GetPipelineVersion,
        pb.GetPipelineVersionRequest(name="pipelines/ghost/versions/1"),
        grpc.StatusCode.NOT_FOUND,
    )


def test_version_requires_spec(api: Api) -> None:
    create_pipeline(api, "p")
    details = expect_error(
        api.pipelines.CreatePipelineVersion,
        pb.CreatePipelineVersionRequest(parent="pipelines/p"),
        INVALID,
    )
    assert "pipeline_version.spec" in details.violations


@pytest.mark.parametrize(
    "name", ["pipelines/p/versions/0", "pipelines/p/versions/x", "pipelines/p/v/1"]
)
def test_bad_version_names(api: Api, name: str) -> None:
    expect_error(api.pipelines.GetPipelineVersion, pb.GetPipelineVersionRequest(name=name), INVALID)


def test_rollback_points_default_back_and_keeps_history(api: Api) -> None:
    create_pipeline(api, "p")
    create_pipeline(api, "other")
    for _ in range(3):
        create_version(api, "p")
    rolled = api.pipelines.RollbackPipeline(
        pb.RollbackPipelineRequest(name="pipelines/p", version="pipelines/p/versions/1")
    ).pipeline
    assert rolled.default_version == "pipelines/p/versions/1"
    versions = api.pipelines.ListPipelineVersions(
        pb.ListPipelineVersionsRequest(parent="pipelines/p")
    ).pipeline_versions
    assert [v.version_number for v in versions] == [3, 2, 1]
    expect_error(
        api.pipelines.RollbackPipeline,
        pb.RollbackPipelineRequest(name="pipelines/p", version="pipelines/p/versions/9"),
        grpc.StatusCode.NOT_FOUND,
    )
    details = expect_error(
        api.pipelines.RollbackPipeline,
        pb.RollbackPipelineRequest(name="pipelines/p", version="pipelines/other/versions/1"),
        INVALID,
    )
    assert "version" in details.violations
    # a new version still becomes the default after a rollback
    v4 = create_version(api, "p")
    assert (
        api.pipelines.GetPipeline(
            pb.GetPipelineRequest(name="pipelines/p")
        ).pipeline.default_version
        == v4.name
    )


# --- validation ------------------------------------------------------------------------------


def _violations(api: Api, spec: pipeline_spec_pb2.PipelineSpec) -> dict[str, str]:
    details = expect_error(
        api.pipelines.ValidatePipelineSpec, pb.ValidatePipelineSpecRequest(spec=spec), INVALID
    )
    assert details.reason == "INVALID_PIPELINE_SPEC"
    return details.violations


def test_validation_reports_every_problem_with_its_field_path(api: Api) -> None:
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.nodes.add(id="a", type="noop", depends_on=["c"])
    spec.nodes.add(id="b", type="noop", depends_on=["a", "ghost"])
    spec.nodes.add(id="c", type="noop", depends_on=["b"])
    spec.nodes.add(id="Bad-Id", type="noop")
    spec.nodes.add(id="a", type="noop")
    spec.nodes.add(id="d", type="no_such_type")
    bad_params = spec.nodes.add(id="e", type="noop")
    bad_params.params.update({"sleep_seconds": -1})
    cpus = spec.nodes.add(id="f", type="noop")
    cpus.resources.num_cpus = -1
    gpus = spec.nodes.add(id="g", type="noop")
    gpus.resources.num_gpus = 1.5
    violations = _violations(api, spec)
    assert "spec.nodes[1].depends_on[1]" in violations  # unknown dependency
    assert "ghost" in violations["spec.nodes[1].depends_on[1]"]
    assert "spec.nodes[3].id" in violations  # malformed id
    assert "spec.nodes[4].id" in violations  # duplicate id
    assert "spec.nodes[5].type" in violations  # unknown type
    assert "spec.nodes[6].params.sleep_seconds" in violations
    assert "spec.nodes[7].resources.num_cpus" in violations
    assert "spec.nodes[8].resources.num_gpus" in violations
    # a depends on c, b on a, c on b: data flows a -> b -> c -> a, named from the node listed
    # first, on the dependency that closes the cycle (a's on c).
    assert violations["spec.nodes[0].depends_on[0]"] == "cycle: a -> b -> c -> a"
    assert [f for f, d in violations.items() if d.startswith("cycle:")] == [
        "spec.nodes[0].depends_on[0]"
    ]


def test_a_fraction_of_one_gpu_is_accepted(api: Api) -> None:
    # A fractional GPU count is refused above 1 (above) but accepted below it: nodes share a GPU.
    create_pipeline(api, "gpu")
    spec = chain_spec(2)
    spec.nodes[1].resources.num_gpus = 0.5
    created = create_version(api, "gpu", spec)
    assert created.name == "pipelines/gpu/versions/1"
    stored = api.pipelines.GetPipelineVersion(
        pb.GetPipelineVersionRequest(name=created.name)
    ).pipeline_version
    assert stored.spec.nodes[1].resources.num_gpus == 0.5
    assert stored.spec == spec


def test_validation_of_create_version_uses_the_request_path(api: Api) -> None:
    create_pipeline(api, "p")
    spec = chain_spec(2)
    spec.nodes[1].depends_on[0] = "nowhere"
    details = expect_error(
        api.pipelines.CreatePipelineVersion,
        pb.CreatePipelineVersionRequest(
            parent="pipelines/p", pipeline_version=pipeline_pb2.PipelineVersion(spec=spec)
        ),
        INVALID,
    )
    assert "pipeline_version.spec.nodes[1].depends_on[0]" in details.violations
    # nothing was stored
    assert (
        api.pipelines.GetPipeline(
            pb.GetPipelineRequest(name="pipelines/p")
        ).pipeline.latest_version_number
        == 0
    )


def test_validation_limits_node_count(api: Api) -> None:
    assert (
        api.pipelines.ValidatePipelineSpec(
            pb.ValidatePipelineSpecRequest(spec=chain_spec(10_000))
        ).topological_order[-1]
        == "n9999"
    )
    violations = _violations(api, chain_spec(10_001))
    assert "spec.nodes" in violations


def test_validation_rejects_undeclared_parameter(api: Api) -> None:
    spec = chain_spec(1)
    spec.nodes[0].params.update({"sleep_seconds": "{{ parameters.pause }}"})
    assert "spec.nodes[0].params.sleep_seconds" in _violations(api, spec)
    spec.parameters["pause"].number_value = 0
    api.pipelines.ValidatePipelineSpec(pb.ValidatePipelineSpecRequest(spec=spec))


def test_list_node_types_has_noop_with_schema(api: Api) -> None:
    types = api.pipelines.ListNodeTypes(pb.ListNodeTypesRequest()).node_types
    noop = {t.type: t for t in types}["noop"]
    assert noop.description
    assert "sleep_seconds" in json_format.MessageToDict(noop.parameter_schema)["properties"]
    assert noop.origin == "builtin"


# --- delete ----------------------------------------------------------------------------------


def test_delete_refused_while_a_run_is_active_unless_forced(api: Api, plane: ControlPlane) -> None:
    create_pipeline(api, "p")
    create_version(api, "p", chain_spec(2))
    repo = plane.repository
    assert repo is not None
    repo.create_run(
        NewRun(run_id="r1", pipeline_id="p", version_number=1, parameters={}, node_ids=["n0", "n1"])
    )
    details = expect_error(
        api.pipelines.DeletePipeline,
        pb.DeletePipelineRequest(name="pipelines/p"),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details.reason == "PIPELINE_IN_USE"
    api.pipelines.DeletePipeline(pb.DeletePipelineRequest(name="pipelines/p", force=True))
    expect_error(
        api.pipelines.GetPipeline,
        pb.GetPipelineRequest(name="pipelines/p"),
        grpc.StatusCode.NOT_FOUND,
    )
    # the run's history survives a forced delete
    assert repo.get_run("r1").pipeline == "pipelines/p"


def test_delete_unused_pipeline(api: Api) -> None:
    create_pipeline(api, "p")
    create_version(api, "p")
    api.pipelines.DeletePipeline(pb.DeletePipelineRequest(name="pipelines/p"))
    expect_error(
        api.pipelines.GetPipelineVersion,
        pb.GetPipelineVersionRequest(name="pipelines/p/versions/1"),
        grpc.StatusCode.NOT_FOUND,
    )
    expect_error(
        api.pipelines.DeletePipeline,
        pb.DeletePipelineRequest(name="pipelines/p"),
        grpc.StatusCode.NOT_FOUND,
    )


# --- health and reflection -------------------------------------------------------------------


def test_health_and_reflection(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "raypipe.v1.PipelineService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    responses = reflect.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"raypipe.v1.PipelineService", "grpc.health.v1.Health"} <= names
