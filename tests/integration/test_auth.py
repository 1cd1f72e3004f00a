"""Authentication and roles on a real `raypipe serve` (the session's Ray cluster, SQLite),
over gRPC and over the HTTP port: every RPC of every service called by a token of each role,
allowed or PERMISSION_DENIED as the rule table says, the same on both transports; bearer
tokens from a token file and JWTs of a JWKS served here; missing, unknown, expired, wrongly
signed and wrong-audience credentials UNAUTHENTICATED with their reasons; health open;
reflection for viewers; no token ever in the server's log; and a server asked to listen
beyond loopback without authentication refusing to start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import raypipe
from control_plane.auth import RULES, Role, append_token, required_role
from ray_nodes.cluster import LocalHead
from raypipe.v1 import pipeline_service_pb2, run_pb2, run_service_pb2, schedule_service_pb2
from tests.integration.conftest import ServerProcess, error_details, ray_free_env
from tests.integration.test_http_api import connect_details
from tests.jwks import AUDIENCE, ISSUER, KeyServer, key_server

SERVICES = [
    service
    for module in (pipeline_service_pb2, run_service_pb2, schedule_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
]
DENIED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@dataclass
class Secured:
    server: ServerProcess
    tokens: dict[Role, str]
    keys: KeyServer


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("auth")
    token_file = tmp / "tokens.yaml"
    tokens = {role: append_token(token_file, f"{role.label}-bot", role) for role in Role}
    with key_server() as keys:
        server = ServerProcess(
            tmp / "data",
            "--ray-address",
            ray_head.address,
            "--no-mlflow-tracking",
            "--log-level",
            "DEBUG",
            "--auth-tokens",
            str(token_file),
            "--auth-jwks-url",
            keys.url,
            "--auth-issuer",
            ISSUER,
            "--auth-audience",
            AUDIENCE,
            "--auth-role-claim",
            "roles",
            "--max-streams-per-caller",
            "2",
            env=ray_head.client_env(),
        )
        server.start()
        yield Secured(server, tokens, keys)
        server.terminate()


def request_of(method: Any) -> Any:
    return message_factory.GetMessageClass(method.input_type)()


def grpc_call(
    address: str, service: Any, method: Any, request: Any, token: str | None
) -> grpc.StatusCode:
    """The status code of one call (OK, or the error's), with ``token`` as the bearer."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    path = f"/{service.full_name}/{method.name}"
    response = message_factory.GetMessageClass(method.output_type)
    with grpc.insecure_channel(address) as channel:
        kind = channel.unary_stream if method.server_streaming else channel.unary_unary
        stub = kind(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            result = stub(request, metadata=metadata, timeout=30)
            if method.server_streaming:
                next(iter(result), None)
                result.cancel()
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def http_call(
    base: str, path: str, body: dict[str, Any], token: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_every_rpc_by_every_role_over_grpc_and_http(secured: Secured) -> None:
    """The role x RPC matrix: allowed calls reach their servicer (which refuses the empty
    request on its own terms), the others are PERMISSION_DENIED with ROLE_TOO_LOW, alike on
    gRPC and on the Connect port."""
    checked = 0
    for service in SERVICES:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            requests = [request_of(method)]
            if method.name == "DeletePipeline":
                requests.append(
                    pipeline_service_pb2.DeletePipelineRequest(name="pipelines/none", force=True)
                )
            for request in requests:
                needed = required_role(path, request)
                for role, token in secured.tokens.items():
                    code = grpc_call(secured.server.address, service, method, request, token)
                    if role >= needed:
                        assert code not in DENIED, (path, role, code)
                    else:
                        assert code is grpc.StatusCode.PERMISSION_DENIED, (path, role, code)
                    if method.server_streaming:
                        continue  # Connect's streams are enveloped; their unary twin shows the rule
                    status, body = http_call(
                        secured.server.http_address, path, json_format.MessageToDict(request), token
                    )
                    if role >= needed:
                        assert status not in (401, 403), (path, role, body)
                    else:
                        assert status == 403, (path, role, body)
                        details = connect_details(body)
                        assert details.reason == "ROLE_TOO_LOW"
                        assert details.metadata == {"role": role.label, "required": needed.label}
                    checked += 1
    assert checked == 4 * (
        sum(1 for s in SERVICES for m in s.methods if not m.server_streaming) + 1
    )
    assert len(RULES) > checked // 4 - 1


def test_missing_unknown_and_bad_credentials_are_unauthenticated(secured: Secured) -> None:
    address, keys = secured.server.address, secured.keys
    admin = secured.tokens[Role.ADMIN]
    cases = {
        "": "TOKEN_MISSING",
        "rpt_made-up": "TOKEN_UNKNOWN",
        admin[:-1]: "TOKEN_UNKNOWN",
        keys.token(ttl=-120, roles="admin"): "TOKEN_EXPIRED",
        keys.token(aud="another-service", roles="admin"): "TOKEN_WRONG_AUDIENCE",
        keys.token(iss="https://evil.test/", roles="admin"): "TOKEN_WRONG_ISSUER",
    }
    keys.add_key("rogue", publish=False)
    cases[keys.token("rogue", roles="admin")] = "TOKEN_INVALID_SIGNATURE"
    request = pipeline_service_pb2.ListPipelinesRequest()
    for token, reason in cases.items():
        metadata = [("authorization", f"Bearer {token}")] if token else []
        with grpc.insecure_channel(address) as channel:
            stub = channel.unary_unary(
                "/raypipe.v1.PipelineService/ListPipelines",
                request_serializer=pipeline_service_pb2.ListPipelinesRequest.SerializeToString,
                response_deserializer=pipeline_service_pb2.ListPipelinesResponse.FromString,
            )
            with pytest.raises(grpc.RpcError) as caught:
                stub(request, metadata=metadata, timeout=30)
        details = error_details(caught.value)
        assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason), token
        if token:
            assert token not in details.message
        status, body = http_call(
            secured.server.http_address,
            "/raypipe.v1.PipelineService/ListPipelines",
            {},
            token or None,
        )
        assert (status, connect_details(body).reason) == (401, reason)


def test_jwts_and_tokens_drive_the_sdk_and_the_cli(secured: Secured) -> None:
    address, keys = secured.server.address, secured.keys
    editor_jwt = keys.token(roles=["editor"], sub="carol")
    with raypipe.Client(address, token=editor_jwt) as carol:
        carol.apply({"nodes": [{"id": "a", "type": "noop"}]}, pipeline="by-jwt")
    with raypipe.Client(address, token=keys.token(roles="viewer")) as viewer:
        assert viewer.get_pipeline("by-jwt").name == "pipelines/by-jwt"
        with pytest.raises(raypipe.PermissionDeniedError):
            viewer.create_run("by-jwt")
    with raypipe.Client(address, token="") as nobody, pytest.raises(raypipe.UnauthenticatedError):
        nobody.get_pipeline("by-jwt")
    cli = [sys.executable, "-m", "raypipe.cli", "--address", address]
    env = {**ray_free_env(), "RAYPIPE_TOKEN": secured.tokens[Role.VIEWER]}
    listed = subprocess.run(
        [*cli, "pipelines", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "by-jwt" in listed.stdout
    refused = subprocess.run(
        [*cli, "--token", secured.tokens[Role.VIEWER], "run", "by-jwt"],
        env=ray_free_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "ROLE_TOO_LOW" in refused.stderr
    assert "operator" in refused.stderr


def test_health_is_open_and_reflection_needs_a_viewer(secured: Secured) -> None:
    with grpc.insecure_channel(secured.server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        with pytest.raises(grpc.RpcError) as caught:
            list(reflect.ServerReflectionInfo(iter(ask), timeout=10))
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        token = [("authorization", f"Bearer {secured.tokens[Role.VIEWER]}")]
        answers = list(reflect.ServerReflectionInfo(iter(ask), metadata=token, timeout=10))
        names = {s.name for s in answers[0].list_services_response.service}
        assert "raypipe.v1.RunService" in names


def test_no_token_appears_in_the_servers_log(secured: Secured) -> None:
    # Every test above has sent tokens (right and wrong ones); the log, at DEBUG, has none.
    log = secured.server.log.read_text()
    assert "refused /raypipe.v1." in log  # the refusals are logged, by reason
    for token in secured.tokens.values():
        assert token not in log
        assert token[4:20] not in log


def test_listening_beyond_loopback_without_authentication_refuses_to_start(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "raypipe.cli", "serve", "--host", "0.0.0.0", "--port", "0"]
    result = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "data"), "--no-http"],
        env=ray_free_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr
    assert "--auth-tokens" in result.stderr
    assert "--allow-unauthenticated" in result.stderr
    assert not (tmp_path / "data" / "raypipe.db").exists()  # nothing was started or created


def test_the_web_ui_signs_in_with_a_token_and_a_401_sends_back_there(secured: Secured) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import CHROMIUM_ARGS, VIEWPORT, chromium_path

    with raypipe.Client(secured.server.address, token=secured.tokens[Role.EDITOR]) as editor:
        editor.apply({"nodes": [{"id": "a", "type": "noop"}]}, pipeline="ui-signed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT, base_url=secured.server.web_ui).new_page()
            page.set_default_timeout(60_000)
            # Without a token, the page's first call is refused and the user is sent to sign in.
            page.goto("/pipelines/ui-signed")
            expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fpipelines%2Fui-signed"))
            expect(page.get_by_test_id("sign-in-reason")).to_contain_text("bearer token")
            form = page.get_by_test_id("sign-in-form")
            form.get_by_label("Token").fill("rpt_wrong")
            form.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("sign-in-error")).to_contain_text("TOKEN_UNKNOWN")
            form.get_by_label("Token").fill(secured.tokens[Role.VIEWER])
            form.get_by_role("button", name="Sign in").click()
            # Back where the user was, as a viewer: reading works, running is refused.
            expect(page).to_have_url(re.compile(r"/pipelines/ui-signed$"))
            expect(page.get_by_test_id("version-yaml")).to_contain_text("noop")
            page.get_by_test_id("run-form").get_by_role("button", name=re.compile("^Run")).click()
            expect(page.get_by_role("alert").filter(has_text="ROLE_TOO_LOW")).to_be_visible()
            # The token lives in this tab's session storage only, never in the page's address.
            assert secured.tokens[Role.VIEWER] not in page.url
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(re.compile(r"/sign-in$"))
            page.goto("/runs")
            expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fruns"))
        finally:
            browser.close()


def test_one_caller_may_hold_only_so_many_streams(secured: Secured) -> None:
    """--max-streams-per-caller 2: a third WatchRun of the same caller is RESOURCE_EXHAUSTED
    (gRPC and HTTP alike) while another caller's goes through; closing one frees its place."""
    address = secured.server.address
    with raypipe.Client(address, token=secured.tokens[Role.EDITOR]) as editor:
        editor.apply(
            {"nodes": [{"id": "nap", "type": "noop", "params": {"sleep_seconds": 60}}]},
            pipeline="napping",
        )
        run = editor.create_run("napping")
    viewer = [("authorization", f"Bearer {secured.tokens[Role.VIEWER]}")]
    request = run_service_pb2.WatchRunRequest(name=run.name)
    channel = grpc.insecure_channel(address)
    watch = channel.unary_stream(
        "/raypipe.v1.RunService/WatchRun",
        request_serializer=run_service_pb2.WatchRunRequest.SerializeToString,
        response_deserializer=run_service_pb2.WatchRunResponse.FromString,
    )
    try:
        first, second = (watch(request, metadata=viewer, timeout=120) for _ in range(2))
        assert next(first).event.type == next(second).event.type  # both open: snapshots came
        with pytest.raises(grpc.RpcError) as caught:
            next(watch(request, metadata=viewer, timeout=30))
        details = error_details(caught.value)
        assert (details.code, details.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_STREAMS",
        )
        assert details.metadata == {"limit": "2"}
        # Over HTTP too: the same caller, the same refusal.
        body = json.dumps({"name": run.name}).encode()
        envelope = b"\x00" + len(body).to_bytes(4, "big") + body
        http = urllib.request.Request(
            f"{secured.server.http_address}/raypipe.v1.RunService/WatchRun",
            data=envelope,
            headers={
                "Content-Type": "application/connect+json",
                "Authorization": f"Bearer {secured.tokens[Role.VIEWER]}",
            },
        )
        with urllib.request.urlopen(http, timeout=30) as response:
            raw = response.read()
        end = json.loads(raw[5:])  # the end-of-stream message carries the error
        assert end["error"]["code"] == "resource_exhausted"
        # Another caller is not held up by this one.
        admin = [("authorization", f"Bearer {secured.tokens[Role.ADMIN]}")]
        other = watch(request, metadata=admin, timeout=60)
        assert next(other).event.type == run_pb2.RunEvent.TYPE_SNAPSHOT
        other.cancel()
        # Closing a stream frees its place.
        first.cancel()
        deadline = time.monotonic() + 20
        while True:
            try:
                third = watch(request, metadata=viewer, timeout=60)
                next(third)
                third.cancel()
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "a closed stream still counted"
                time.sleep(0.2)
        second.cancel()
    finally:
        channel.close()
        with raypipe.Client(address, token=secured.tokens[Role.OPERATOR]) as operator:
            operator.cancel_run(run)


def test_each_version_run_schedule_and_change_records_who_made_it(secured: Secured) -> None:
    address, keys, tokens = secured.server.address, secured.keys, secured.tokens
    with raypipe.Client(address, token=keys.token(roles="editor", sub="dora")) as dora:
        applied = dora.apply({"nodes": [{"id": "a", "type": "noop"}]}, pipeline="made-by")
        assert applied.version.creator == "dora"
        assert dora.get_pipeline_version("made-by", 1).creator == "dora"
        schedule = dora.create_schedule("made-by", every="1h", schedule_id="made-by-hourly")
        assert (schedule.creator, schedule.updater) == ("dora", "dora")
    with raypipe.Client(address, token=tokens[Role.OPERATOR]) as operator:
        run = operator.create_run("made-by")
        assert run.creator == "operator-bot"
        assert operator.get_run(run).creator == "operator-bot"
        paused = operator.pause_schedule("made-by-hourly", note="maintenance")
        assert (paused.creator, paused.updater) == ("dora", "operator-bot")
        triggered = operator.trigger_schedule("made-by-hourly")
        assert operator.get_run(triggered).creator == "system:scheduler"
        assert triggered.creator == "system:scheduler"
    cli = [
        sys.executable,
        "-m",
        "raypipe.cli",
        "--address",
        address,
        "--token",
        tokens[Role.VIEWER],
    ]
    shown = subprocess.run(
        [*cli, "schedules", "get", "made-by-hourly"],
        env=ray_free_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"created by\s+dora", shown.stdout)
    assert re.search(r"updated by\s+operator-bot", shown.stdout)
