"""PipelineService: pipelines and their immutable, numbered versions."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from control_plane import names
from control_plane.auth import caller_name
from control_plane.errors import FieldViolation, InvalidArgumentError
from control_plane.filtering import parse_filter
from control_plane.pipelines.validation import validate_spec
from control_plane.rpc import unary
from control_plane.storage.repository import Repository
from ray_nodes.node import ArtifactKind, NodeType
from ray_nodes.registry import NodeRegistry
from raypipe.v1 import node_type_pb2, pipeline_service_pb2_grpc, pipeline_spec_pb2
from raypipe.v1 import pipeline_service_pb2 as pb


def node_type_message(cls: type[NodeType], *, origin: str) -> node_type_pb2.NodeType:
    """The API's description of a registered node type."""
    schema = struct_pb2.Struct()
    schema.update(cls.parameter_schema)
    defaults = cls.default_resources
    return node_type_pb2.NodeType(
        type=cls.type_name,
        description=cls.description(),
        parameter_schema=schema,
        inputs=[_KINDS[k] for k in cls.inputs],
        output=_KINDS[cls.output],
        default_resources=pipeline_spec_pb2.Resources(
            num_cpus=defaults.num_cpus,
            num_gpus=defaults.num_gpus,
            memory_bytes=defaults.memory_bytes,
        ),
        origin=origin,
    )


_KINDS: dict[ArtifactKind, str] = {kind: f"ARTIFACT_KIND_{kind.name}" for kind in ArtifactKind}


class PipelineService(pipeline_service_pb2_grpc.PipelineServiceServicer):
    """Implements ``raypipe.v1.PipelineService`` over a :class:`Repository`."""

    def __init__(self, repository: Repository, registry: NodeRegistry) -> None:
        self._repo = repository
        self._registry = registry
        self._node_types: list[node_type_pb2.NodeType] | None = None

    @unary
    def CreatePipeline(
        self, request: pb.CreatePipelineRequest, context: grpc.ServicerContext
    ) -> pb.CreatePipelineResponse:
        pipeline_id = names.check_pipeline_id(request.pipeline_id, "pipeline_id")
        p = request.pipeline
        problems = [
            *names.text_violations(p.display_name, "pipeline.display_name", names.MAX_DISPLAY_NAME),
            *names.text_violations(p.description, "pipeline.description", names.MAX_DESCRIPTION),
            *names.label_violations(p.labels, "pipeline.labels"),
        ]
        if problems:
            raise InvalidArgumentError.from_violations(problems)
        created = self._repo.create_pipeline(
            pipeline_id,
            display_name=p.display_name or pipeline_id,
            description=p.description,
            labels=dict(p.labels),
        )
        return pb.CreatePipelineResponse(pipeline=created)

    @unary
    def GetPipeline(
        self, request: pb.GetPipelineRequest, context: grpc.ServicerContext
    ) -> pb.GetPipelineResponse:
        pipeline_id = names.parse_pipeline_name(request.name)
        return pb.GetPipelineResponse(pipeline=self._repo.get_pipeline(pipeline_id))

    @unary
    def ListPipelines(
        self, request: pb.ListPipelinesRequest, context: grpc.ServicerContext
    ) -> pb.ListPipelinesResponse:
        page = self._repo.list_pipelines(
            page_size=names.page_size(request.page_size),
            page_token=request.page_token,
            terms=parse_filter(request.filter),
        )
        return pb.ListPipelinesResponse(pipelines=page.items, next_page_token=page.next_page_token)

    @unary
    def DeletePipeline(
        self, request: pb.DeletePipelineRequest, context: grpc.ServicerContext
    ) -> pb.DeletePipelineResponse:
        pipeline_id = names.parse_pipeline_name(request.name)
        self._repo.delete_pipeline(pipeline_id, force=request.force)
        return pb.DeletePipelineResponse()

    @unary
    def CreatePipelineVersion(
        self, request: pb.CreatePipelineVersionRequest, context: grpc.ServicerContext
    ) -> pb.CreatePipelineVersionResponse:
        pipeline_id = names.parse_pipeline_name(request.parent, "parent")
        version = request.pipeline_version
        if not request.HasField("pipeline_version") or not version.HasField("spec"):
            raise InvalidArgumentError.for_field(
                "pipeline_version.spec", "is required: the DAG of the new version"
            )
        problems = names.text_violations(
            version.description, "pipeline_version.description", names.MAX_DESCRIPTION
        )
        if problems:
            raise InvalidArgumentError.from_violations(problems)
        # Fail on a missing pipeline before the (possibly long) validation of a big spec.
        self._repo.get_pipeline(pipeline_id)
        validated = validate_spec(
            version.spec, self._registry, field_prefix="pipeline_version.spec"
        )
        created = self._repo.create_version(
            pipeline_id,
            version.spec,
            spec_digest=validated.spec_digest,
            description=version.description,
            make_default=not request.keep_default_version,
            creator=caller_name(),
        )
        return pb.CreatePipelineVersionResponse(pipeline_version=created)

    @unary
    def GetPipelineVersion(
        self, request: pb.GetPipelineVersionRequest, context: grpc.ServicerContext
    ) -> pb.GetPipelineVersionResponse:
        pipeline_id, number = names.parse_version_name(request.name)
        return pb.GetPipelineVersionResponse(
            pipeline_version=self._repo.get_version(pipeline_id, number)
        )

    @unary
    def ListPipelineVersions(
        self, request: pb.ListPipelineVersionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPipelineVersionsResponse:
        pipeline_id = names.parse_pipeline_name(request.parent, "parent")
        page = self._repo.list_versions(
            pipeline_id,
            page_size=names.page_size(request.page_size),
            page_token=request.page_token,
            omit_spec=request.omit_spec,
        )
        return pb.ListPipelineVersionsResponse(
            pipeline_versions=page.items, next_page_token=page.next_page_token
        )

    @unary
    def RollbackPipeline(
        self, request: pb.RollbackPipelineRequest, context: grpc.ServicerContext
    ) -> pb.RollbackPipelineResponse:
        pipeline_id = names.parse_pipeline_name(request.name)
        version_pipeline, number = names.parse_version_name(request.version, "version")
        if version_pipeline != pipeline_id:
            raise InvalidArgumentError.from_violations(
                [
                    FieldViolation(
                        "version",
                        f"{request.version!r} belongs to pipeline {version_pipeline!r}, "
                        f"not to {pipeline_id!r}",
                    )
                ]
            )
        return pb.RollbackPipelineResponse(
            pipeline=self._repo.set_default_version(pipeline_id, number)
        )

    @unary
    def ValidatePipelineSpec(
        self, request: pb.ValidatePipelineSpecRequest, context: grpc.ServicerContext
    ) -> pb.ValidatePipelineSpecResponse:
        validated = validate_spec(request.spec, self._registry, field_prefix="spec")
        return pb.ValidatePipelineSpecResponse(
            topological_order=validated.topological_order, spec_digest=validated.spec_digest
        )

    @unary
    def ListNodeTypes(
        self, request: pb.ListNodeTypesRequest, context: grpc.ServicerContext
    ) -> pb.ListNodeTypesResponse:
        if self._node_types is None:  # the registry is fixed once the server has started
            self._node_types = [
                node_type_message(self._registry.get(name), origin=self._registry.origin(name))
                for name in sorted(self._registry.names())
            ]
        return pb.ListNodeTypesResponse(node_types=self._node_types)
