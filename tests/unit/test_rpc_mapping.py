"""The one mapping of unexpected exceptions to statuses (control_plane.rpc): ray_nodes' input
errors are INVALID_ARGUMENT, its other errors and anything else INTERNAL, an unreachable
database UNAVAILABLE without the driver's text."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import exc as sa_exc

from control_plane.rpc import _internal
from ray_nodes.engine.artifacts import ArtifactIntegrityError
from ray_nodes.graph import CycleError
from ray_nodes.paths import PathEscapeError
from ray_nodes.registry import UnknownNodeTypeError
from ray_nodes.templating import TemplateError


@pytest.mark.parametrize(
    "exc",
    [
        CycleError([("a", "b")]),
        TemplateError("unknown parameter 'x'"),
        PathEscapeError("artifact path '../x': climbs out"),
        UnknownNodeTypeError("nope", []),
    ],
)
def test_ray_nodes_input_errors_are_invalid_argument(exc: Exception) -> None:
    mapped = _internal("CreateRun", exc)
    assert mapped.code == grpc.StatusCode.INVALID_ARGUMENT
    assert mapped.reason == "INVALID_ARGUMENT"


def test_other_errors_are_internal_and_storage_outages_unavailable() -> None:
    assert _internal("GetRun", ArtifactIntegrityError("sha mismatch")).code == (
        grpc.StatusCode.INTERNAL
    )
    assert _internal("GetRun", RuntimeError("bug")).code == grpc.StatusCode.INTERNAL
    outage = sa_exc.OperationalError("SELECT 1", {}, Exception("host db:5432 refused"))
    mapped = _internal("GetRun", outage)
    assert mapped.code == grpc.StatusCode.UNAVAILABLE
    assert "5432" not in str(mapped)
