"""Who may call what: the roles and the one table of every method's rule.

Roles are ordered: ``viewer`` (reads: get, list, watch, validate, node types, logs),
``operator`` (viewer, and runs: create, cancel, retry; schedules: pause, resume, trigger,
backfill), ``editor`` (operator, and pipelines, versions, rollback, schedules' create, update
and delete), ``admin`` (editor, and deletes with ``force``). Health is open to everyone;
reflection follows the viewer rule. A method with no rule here is refused, so a new RPC
cannot be served before someone decides who may call it (a test checks that every method of
every service has a rule).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from control_plane.errors import PermissionDeniedError


class Role(enum.IntEnum):
    """A caller's role; each includes every role below it."""

    VIEWER = 1
    OPERATOR = 2
    EDITOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        """``viewer``, ``operator``, ``editor`` or ``admin`` (any case); ValueError otherwise."""
        try:
            return cls[value.strip().upper()]
        except KeyError:
            choices = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {value!r}: one of {choices}") from None


#: A method's rule: the role it needs, or a function of the request that says (a delete with
#: ``force`` needs more than one without).
Rule = Role | Callable[[Any], Role]

VIEWER, OPERATOR, EDITOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.EDITOR, Role.ADMIN

#: Methods anyone may call, without credentials.
OPEN_METHODS = frozenset(
    {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/List"}
)


def _delete_pipeline(request: Any) -> Role:
    return ADMIN if getattr(request, "force", False) else EDITOR


#: Every method of every service the server offers, by its full gRPC name.
RULES: Mapping[str, Rule] = {
    # PipelineService
    "/raypipe.v1.PipelineService/CreatePipeline": EDITOR,
    "/raypipe.v1.PipelineService/GetPipeline": VIEWER,
    "/raypipe.v1.PipelineService/ListPipelines": VIEWER,
    "/raypipe.v1.PipelineService/DeletePipeline": _delete_pipeline,
    "/raypipe.v1.PipelineService/CreatePipelineVersion": EDITOR,
    "/raypipe.v1.PipelineService/GetPipelineVersion": VIEWER,
    "/raypipe.v1.PipelineService/ListPipelineVersions": VIEWER,
    "/raypipe.v1.PipelineService/RollbackPipeline": EDITOR,
    "/raypipe.v1.PipelineService/ValidatePipelineSpec": VIEWER,
    "/raypipe.v1.PipelineService/ListNodeTypes": VIEWER,
    # RunService
    "/raypipe.v1.RunService/CreateRun": OPERATOR,
    "/raypipe.v1.RunService/GetRun": VIEWER,
    "/raypipe.v1.RunService/ListRuns": VIEWER,
    "/raypipe.v1.RunService/CancelRun": OPERATOR,
    "/raypipe.v1.RunService/WatchRun": VIEWER,
    "/raypipe.v1.RunService/RetryRun": OPERATOR,
    "/raypipe.v1.RunService/GetNodeLogs": VIEWER,
    "/raypipe.v1.RunService/WatchNodeLogs": VIEWER,
    # ScheduleService
    "/raypipe.v1.ScheduleService/CreateSchedule": EDITOR,
    "/raypipe.v1.ScheduleService/GetSchedule": VIEWER,
    "/raypipe.v1.ScheduleService/ListSchedules": VIEWER,
    "/raypipe.v1.ScheduleService/UpdateSchedule": EDITOR,
    "/raypipe.v1.ScheduleService/DeleteSchedule": EDITOR,
    "/raypipe.v1.ScheduleService/PauseSchedule": OPERATOR,
    "/raypipe.v1.ScheduleService/ResumeSchedule": OPERATOR,
    "/raypipe.v1.ScheduleService/TriggerSchedule": OPERATOR,
    "/raypipe.v1.ScheduleService/BackfillSchedule": OPERATOR,
    # Reflection (grpcurl's listing of the services): what a viewer may see.
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": VIEWER,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": VIEWER,
}


def required_role(method: str, request: Any) -> Role:
    """The role ``method`` needs for ``request``; PermissionDeniedError for a method without
    a rule."""
    rule = RULES.get(method)
    if rule is None:
        raise PermissionDeniedError(
            f"{method} has no authorization rule, so no one may call it",
            reason="METHOD_NOT_AUTHORIZED",
            metadata={"method": method},
        )
    return rule if isinstance(rule, Role) else rule(request)
