"""What the sync and the async client share: the services, channel set-up, request building.

Adding a service to the SDK: list it in :data:`SERVICES`, create its stub in both clients'
``__init__``, add request builders here where a method does more than fill in a name, and a
method per RPC to :class:`raypipe.Client` and :class:`raypipe.AsyncClient`
(``tests/unit/test_sdk_exports.py`` fails until both have one for every RPC).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import json_format, struct_pb2

from raypipe._errors import RunFailedError, WaitTimeoutError
from raypipe._names import (
    PipelineRef,
    RunRef,
    VersionRef,
    pipeline_id,
    pipeline_name,
    run_name,
    version_name,
)
from raypipe._specfile import SpecLike, as_spec
from raypipe.v1 import (
    pipeline_pb2,
    pipeline_service_pb2,
    run_pb2,
    run_service_pb2,
    schedule_service_pb2,
)

#: The services the SDK speaks; gRPC's retry policy covers each of them.
SERVICES: tuple[Any, ...] = (
    pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"],
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"],
    schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"],
)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # as the server; a 10,000-node spec fits easily

Metadata = Sequence[tuple[str, str]] | Mapping[str, str]
"""gRPC metadata sent with every call, such as ``{"authorization": "Bearer ..."}``."""

TERMINAL_STATES = frozenset(
    {run_pb2.Run.STATE_SUCCEEDED, run_pb2.Run.STATE_FAILED, run_pb2.Run.STATE_CANCELLED}
)

#: What a wait without progress callbacks asks WatchRun for: the run's state changes, not
#: every node's.
OUTCOME_EVENTS = (run_pb2.RunEvent.TYPE_RUN_STATE_CHANGED,)


def normalize_metadata(metadata: Metadata) -> tuple[tuple[str, str], ...]:
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    return tuple((str(k).lower(), str(v)) for k, v in items)


#: Where clients read a bearer token from when none is given.
TOKEN_ENV = "RAYPIPE_TOKEN"
#: Where clients read their TLS files from when none is given.
TLS_ENV = ("RAYPIPE_TLS_CA", "RAYPIPE_TLS_CERT", "RAYPIPE_TLS_KEY")


def tls_credentials(
    ca: str | os.PathLike[str] | None,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
) -> grpc.ChannelCredentials | None:
    """TLS channel credentials from PEM files (None: the RAYPIPE_TLS_* variables); None when
    neither a CA nor a client certificate is given (plaintext). ``ca="system"`` trusts the
    system's roots."""
    ca, cert, key = (
        value if value is not None else os.environ.get(env, "") or None
        for value, env in zip((ca, cert, key), TLS_ENV, strict=True)
    )
    if ca is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs its key: give both tls_cert and tls_key")
    roots = None if ca in (None, "system") else Path(ca).read_bytes()
    return grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=Path(key).read_bytes() if key is not None else None,
        certificate_chain=Path(cert).read_bytes() if cert is not None else None,
    )


def with_token(
    metadata: tuple[tuple[str, str], ...], token: str | None
) -> tuple[tuple[str, str], ...]:
    """``metadata`` with ``authorization: Bearer TOKEN`` for ``token`` (None: the
    RAYPIPE_TOKEN environment variable; empty: none), unless it has an authorization
    already."""
    if token is None:
        token = os.environ.get(TOKEN_ENV, "")
    token = token.strip()
    if not token or any(k == "authorization" for k, _ in metadata):
        return metadata
    return (*metadata, ("authorization", f"Bearer {token}"))


def channel_options(retries: int, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Channel options: message sizes, gRPC's own retry of calls that fail UNAVAILABLE, and
    client-side health checking (which round_robin uses).

    gRPC retries a call only while no response has arrived, so a retried call was not
    processed twice, with one exception: a connection lost after the server acted. CreateRun
    and RetryRun carry a request_id for exactly that case.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    # With round_robin over several replicas (or a name resolving to several), gRPC watches
    # each one's health service and sends only to those SERVING: a replica shutting down, or
    # still starting, gets no new calls.
    config: dict[str, Any] = {"healthCheckConfig": {"serviceName": ""}}
    if retries > 0:
        policy = {
            "maxAttempts": min(retries + 1, 5),  # gRPC caps attempts at 5
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
        config["methodConfig"] = [
            {"name": [{"service": desc.full_name} for desc in SERVICES], "retryPolicy": policy}
        ]
        options.append(("grpc.enable_retries", 1))
    else:
        options.append(("grpc.enable_retries", 0))
    options.append(("grpc.service_config", json.dumps(config)))
    return options + list(extra)


@dataclass(frozen=True)
class ApplyResult:
    """What :meth:`raypipe.Client.apply` did.

    Attributes:
        pipeline: The pipeline after the call, with its ``default_version``.
        version: The new version, or the default version whose spec was the same.
        pipeline_created: True when the pipeline did not exist before.
        version_created: True when a new version was stored; False when the spec's digest
            equalled the default version's.
    """

    pipeline: pipeline_pb2.Pipeline
    version: pipeline_pb2.PipelineVersion
    pipeline_created: bool
    version_created: bool


# --- values -------------------------------------------------------------------------------


def to_value(value: Any, where: str) -> struct_pb2.Value:
    """A JSON-like Python value as a google.protobuf.Value."""
    if isinstance(value, struct_pb2.Value):
        return value
    message = struct_pb2.Value()
    try:
        json_format.ParseDict(value, message)
    except (json_format.ParseError, TypeError) as e:
        raise ValueError(f"{where}: {value!r} is not a JSON value ({e})") from None
    return message


def run_states(states: Iterable[int | str]) -> list[int]:
    """``"running"``, ``"STATE_RUNNING"`` or ``Run.STATE_RUNNING`` -> the enum number."""
    known = list(run_pb2.Run.State.keys())
    out = []
    for state in states:
        if isinstance(state, str):
            name = state.upper()
            name = name if name.startswith("STATE_") else f"STATE_{name}"
            if name not in known or name == "STATE_UNSPECIFIED":
                choices = ", ".join(k.removeprefix("STATE_").lower() for k in known[1:])
                raise ValueError(f"{state!r} is not a run state (one of: {choices})")
            out.append(run_pb2.Run.State.Value(name))
        else:
            out.append(int(state))
    return out


def state_name(state: int) -> str:
    """``Run.STATE_RUNNING`` -> ``RUNNING``."""
    return run_pb2.Run.State.Name(state).removeprefix("STATE_")  # type: ignore[arg-type]


# --- requests -----------------------------------------------------------------------------


def create_pipeline(
    pipeline_id_: str,
    *,
    display_name: str,
    description: str,
    labels: Mapping[str, str] | None,
) -> pipeline_service_pb2.CreatePipelineRequest:
    return pipeline_service_pb2.CreatePipelineRequest(
        pipeline_id=pipeline_id(pipeline_id_),
        pipeline=pipeline_pb2.Pipeline(
            display_name=display_name, description=description, labels=dict(labels or {})
        ),
    )


def create_pipeline_version(
    pipeline: PipelineRef, spec: SpecLike, *, description: str, keep_default_version: bool
) -> pipeline_service_pb2.CreatePipelineVersionRequest:
    return pipeline_service_pb2.CreatePipelineVersionRequest(
        parent=pipeline_name(pipeline),
        pipeline_version=pipeline_pb2.PipelineVersion(spec=as_spec(spec), description=description),
        keep_default_version=keep_default_version,
    )


def validate_pipeline_spec(spec: SpecLike) -> pipeline_service_pb2.ValidatePipelineSpecRequest:
    return pipeline_service_pb2.ValidatePipelineSpecRequest(spec=as_spec(spec))


def apply_pipeline_id(spec: SpecLike, pipeline: PipelineRef | None) -> str:
    """The pipeline id ``apply`` works on: the one given, else a builder's name."""
    if pipeline is not None:
        return pipeline_id(pipeline)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and not isinstance(spec, Mapping):
        return pipeline_id(name)
    raise ValueError("give the pipeline id: apply(spec, pipeline='churn')")


def create_run(
    pipeline: PipelineRef | None,
    *,
    version: VersionRef | None,
    parameters: Mapping[str, Any] | None,
    labels: Mapping[str, str] | None,
    display_name: str,
    request_id: str | None,
) -> run_service_pb2.CreateRunRequest:
    if pipeline is None and version is None:
        raise ValueError("give the pipeline to run (its default version), or a version")
    run = run_pb2.Run(labels=dict(labels or {}), display_name=display_name)
    if pipeline is not None:
        run.pipeline = pipeline_name(pipeline)
    if version is not None:
        run.pipeline_version = version_name(pipeline, version)
    for key, value in (parameters or {}).items():
        run.parameters[key].CopyFrom(to_value(value, f"parameters[{key!r}]"))
    return run_service_pb2.CreateRunRequest(run=run, request_id=request_id or new_request_id())


def list_runs(
    *,
    pipeline: PipelineRef | None,
    version: VersionRef | None,
    states: Iterable[Any],
    schedule: str,
    filter: str,
    page_size: int,
    omit_nodes: bool = False,
) -> run_service_pb2.ListRunsRequest:
    request = run_service_pb2.ListRunsRequest(
        page_size=page_size,
        states=cast(Any, run_states(states)),
        schedule=schedule,
        filter=filter,
        omit_nodes=omit_nodes,
    )
    if pipeline is not None:
        request.pipeline = pipeline_name(pipeline)
    if version is not None:
        request.pipeline_version = version_name(pipeline, version)
    if schedule and not schedule.startswith("schedules/"):
        request.schedule = f"schedules/{schedule}"
    return request


def new_request_id() -> str:
    """A fresh idempotency key; one per logical call, reused by every retry of it."""
    return str(uuid.uuid4())


# --- following runs -----------------------------------------------------------------------


def version_in(ref: PipelineRef) -> str:
    """The version name a reference holds, if it names a version rather than a pipeline."""
    text = ref if isinstance(ref, str) else getattr(ref, "name", "")
    parts = text.split("/")
    return text if len(parts) == 4 and parts[0] == "pipelines" and parts[2] == "versions" else ""


def outcome(run: run_pb2.Run, raise_on_failure: bool) -> run_pb2.Run:
    """What waiting for ``run`` returns, or the RunFailedError it raises."""
    if raise_on_failure and run.state != run_pb2.Run.STATE_SUCCEEDED:
        raise RunFailedError(run)
    return run


def wait_timeout(run: RunRef, timeout: float | None, last: run_pb2.Run | None) -> Exception:
    state = f" (last seen {state_name(last.state)})" if last is not None else ""
    return WaitTimeoutError(f"{run_name(run)} did not end within {timeout}s{state}", last)


class Backoff:
    """Reconnect delays: 0.1 s doubling to 5 s, reset once a stream delivers again."""

    def __init__(self) -> None:
        self._delay = 0.1

    def reset(self) -> None:
        self._delay = 0.1

    def next(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, 5.0)
        return delay
