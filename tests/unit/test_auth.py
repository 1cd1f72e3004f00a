"""Authentication and authorization, below the server: the rule table covers every method of
every service; token files hold hashes only and are compared in constant time; JWTs are
checked against a JWKS served on loopback (expired, not yet valid, wrongly signed, of another
issuer or audience, ``alg: none``, an unknown ``kid`` fetching the keys again)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from control_plane.auth import (
    OPEN_METHODS,
    RULES,
    Authorizer,
    JwtVerifier,
    Role,
    TokenFile,
    append_token,
    required_role,
    token_digest,
)
from control_plane.auth.credentials import parse_token_file
from control_plane.errors import ApiError, PermissionDeniedError, UnauthenticatedError
from raypipe.v1 import (
    pipeline_service_pb2,
    run_service_pb2,
    schedule_service_pb2,
)
from tests.jwks import AUDIENCE, ISSUER, KeyServer, key_server

SERVICE_MODULES = (pipeline_service_pb2, run_service_pb2, schedule_service_pb2)


def every_method() -> list[str]:
    methods = []
    for module in SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            methods += [f"/{service.full_name}/{m.name}" for m in service.methods]
    return methods


def test_the_rule_table_names_every_method_of_every_service() -> None:
    methods = every_method()
    assert len(methods) == 27
    assert sorted(set(methods) - set(RULES)) == []
    reflection = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    assert f"/{reflection.full_name}/ServerReflectionInfo" in RULES
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert {f"/{health.full_name}/{m.name}" for m in health.methods} == OPEN_METHODS
    # Nothing in the table that no service has (a renamed method would leave one behind).
    reflection_methods = {m for m in RULES if "ServerReflection" in m}
    assert set(RULES) - reflection_methods == set(methods)


def test_roles_by_method() -> None:
    delete = pipeline_service_pb2.DeletePipelineRequest
    assert required_role("/raypipe.v1.PipelineService/GetPipeline", None) is Role.VIEWER
    assert required_role("/raypipe.v1.RunService/WatchNodeLogs", None) is Role.VIEWER
    assert required_role("/raypipe.v1.RunService/CreateRun", None) is Role.OPERATOR
    assert required_role("/raypipe.v1.ScheduleService/BackfillSchedule", None) is Role.OPERATOR
    assert required_role("/raypipe.v1.ScheduleService/UpdateSchedule", None) is Role.EDITOR
    assert required_role("/raypipe.v1.PipelineService/RollbackPipeline", None) is Role.EDITOR
    method = "/raypipe.v1.PipelineService/DeletePipeline"
    assert required_role(method, delete(name="pipelines/a")) is Role.EDITOR
    assert required_role(method, delete(name="pipelines/a", force=True)) is Role.ADMIN


def test_a_method_without_a_rule_is_refused_even_on_an_open_server() -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        Authorizer().authorize("/raypipe.v1.RunService/DeleteEverything", None, None)
    assert caught.value.reason == "METHOD_NOT_AUTHORIZED"
    # Everything with a rule is allowed without credentials when no authenticator is set.
    assert Authorizer().authorize("/raypipe.v1.RunService/CreateRun", None, None).role is Role.ADMIN


@pytest.fixture
def token_file(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "tokens.yaml"
    tokens = {role.label: append_token(path, f"{role.label}-bot", role) for role in Role}
    return path, tokens


def test_token_file_holds_hashes_only_with_mode_0600(
    token_file: tuple[Path, dict[str, str]],
) -> None:
    path, tokens = token_file
    text = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for role, token in tokens.items():
        assert token.startswith("rpt_")
        assert len(token) > 40
        assert token not in text
        assert token_digest(token) in text
        assert f"{role}-bot" in text
    with pytest.raises(ValueError, match="exists already"):
        append_token(path, "viewer-bot", Role.ADMIN)


def test_tokens_authenticate_with_their_role_and_nothing_else_does(
    token_file: tuple[Path, dict[str, str]],
) -> None:
    path, tokens = token_file
    auth = Authorizer(tokens=TokenFile(path))
    create_run = "/raypipe.v1.RunService/CreateRun"
    principal = auth.authorize(create_run, f"Bearer {tokens['operator']}", None)
    assert (principal.name, principal.role, principal.via) == (
        "operator-bot",
        Role.OPERATOR,
        "token",
    )
    with pytest.raises(PermissionDeniedError) as denied:
        auth.authorize(create_run, f"Bearer {tokens['viewer']}", None)
    assert denied.value.reason == "ROLE_TOO_LOW"
    assert denied.value.metadata == {"role": "viewer", "required": "operator"}
    cases = {
        None: "TOKEN_MISSING",
        "": "TOKEN_MISSING",
        tokens["admin"]: "TOKEN_MALFORMED",  # no scheme
        f"Basic {tokens['admin']}": "TOKEN_MALFORMED",
        "Bearer ": "TOKEN_MALFORMED",
        "Bearer rpt_not-a-token": "TOKEN_UNKNOWN",
        f"Bearer {tokens['admin']}x": "TOKEN_UNKNOWN",
    }
    for header, reason in cases.items():
        with pytest.raises(UnauthenticatedError) as caught:
            auth.authorize(create_run, header, None)
        assert caught.value.reason == reason, header
        assert tokens["admin"] not in caught.value.message
    # Health needs no credentials.
    assert auth.authorize("/grpc.health.v1.Health/Check", None, None).role is Role.VIEWER


def test_a_token_file_is_read_again_when_it_changes(
    token_file: tuple[Path, dict[str, str]],
) -> None:
    path, tokens = token_file
    auth = Authorizer(tokens=TokenFile(path))
    method = "/raypipe.v1.PipelineService/ListPipelines"
    later = append_token(path, "late", Role.VIEWER)
    assert auth.authorize(method, f"Bearer {later}", None).name == "late"
    # Revoked: the entry removed from the file.
    kept = [line for line in path.read_text().splitlines(keepends=True)]
    text = "".join(kept).replace(
        f"- name: viewer-bot\n  role: viewer\n  sha256: {token_digest(tokens['viewer'])}\n", ""
    )
    path.write_text(text)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1))
    with pytest.raises(UnauthenticatedError):
        auth.authorize(method, f"Bearer {tokens['viewer']}", None)
    # A broken file keeps the last good one in force.
    path.write_text("tokens: [{name: x}]\n")
    assert auth.authorize(method, f"Bearer {later}", None).name == "late"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tokens: 3", "list `tokens`"),
        ("tokens: [{name: a, role: boss, sha256: " + "a" * 64 + "}]", "tokens[0].role"),
        ("tokens: [{name: a, role: viewer, sha256: abc}]", "tokens[0].sha256"),
        ("tokens: [{name: 'a b', role: viewer, sha256: " + "a" * 64 + "}]", "tokens[0].name"),
        (
            "tokens: [{name: a, role: viewer, sha256: "
            + "a" * 64
            + "}, {name: a, role: admin, sha256: "
            + "b" * 64
            + "}]",
            "tokens[1].name",
        ),
    ],
)
def test_bad_token_files_name_the_entry(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_token_file(text, "tokens.yaml")


@pytest.fixture
def keys() -> Iterator[KeyServer]:
    with key_server() as server:
        yield server


def verifier(keys: KeyServer, *, cooldown: float = 0) -> JwtVerifier:
    return JwtVerifier(
        keys.url,
        issuer=ISSUER,
        audience=AUDIENCE,
        role_claim="roles",
        leeway_s=0,
        refresh_cooldown_s=cooldown,
    )


def refused(auth: JwtVerifier, token: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        auth.authenticate(token)
    assert token not in caught.value.message
    return caught.value


def unsigned(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{part(payload)}."


def test_jwts_signed_by_the_issuers_keys_authenticate_with_the_highest_role(
    keys: KeyServer,
) -> None:
    auth = verifier(keys)
    principal = auth.authenticate(keys.token(roles=["viewer", "editor", "unknown"]))
    assert (principal.name, principal.role, principal.via) == ("alice", Role.EDITOR, "jwt")
    assert auth.authenticate(keys.token(roles="operator", sub="bob")).name == "bob"
    fetched = keys.fetches
    auth.authenticate(keys.token(roles="viewer"))
    assert keys.fetches == fetched  # keys cached


def test_bad_jwts_are_refused_with_their_reason(keys: KeyServer) -> None:
    auth = verifier(keys)
    now = time.time()
    keys.add_key("rogue", publish=False)
    assert refused(auth, keys.token(ttl=-60, roles="admin")).reason == "TOKEN_EXPIRED"
    assert (
        refused(auth, keys.token(nbf=int(now + 600), roles="admin")).reason == "TOKEN_NOT_YET_VALID"
    )
    assert (
        refused(auth, keys.token(iss="https://evil.test/", roles="admin")).reason
        == "TOKEN_WRONG_ISSUER"
    )
    assert (
        refused(auth, keys.token(aud="someone-else", roles="admin")).reason
        == "TOKEN_WRONG_AUDIENCE"
    )
    assert refused(auth, keys.token(exp=None, roles="admin")).reason == "TOKEN_MALFORMED"
    assert refused(auth, keys.token("rogue", roles="admin")).reason == "TOKEN_INVALID_SIGNATURE"
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "mallory",
        "exp": int(now + 300),
        "roles": "admin",
    }
    assert refused(auth, unsigned(payload)).reason == "TOKEN_INVALID_SIGNATURE"
    # A signature of another token's: the payload changed after signing.
    head, _, sig = keys.token(roles="viewer").split(".")
    forged = f"{head}.{unsigned(payload).split('.')[1]}.{sig}"
    assert refused(auth, forged).reason == "TOKEN_INVALID_SIGNATURE"
    assert refused(auth, "not.a.jwt").reason == "TOKEN_MALFORMED"
    no_role = refused(auth, keys.token(roles=["intern"]))
    assert (no_role.reason, type(no_role)) == ("NO_ROLE", PermissionDeniedError)


def test_a_new_kid_fetches_the_keys_again(keys: KeyServer) -> None:
    auth = verifier(keys)
    auth.authenticate(keys.token(roles="viewer"))
    keys.add_key("k2")  # the issuer rotates its keys
    assert auth.authenticate(keys.token("k2", roles="admin")).role is Role.ADMIN
    assert keys.fetches == 2
    # Within the cool-down, a made-up kid does not fetch again.
    cautious = verifier(keys, cooldown=60)
    cautious.authenticate(keys.token(roles="viewer"))
    fetched = keys.fetches
    keys.add_key("k3", publish=False)
    for _ in range(5):
        assert (
            refused(cautious, keys.token("k3", roles="admin")).reason == "TOKEN_INVALID_SIGNATURE"
        )
    assert keys.fetches == fetched


def test_an_unreachable_jwks_is_unavailable_not_a_bad_token(keys: KeyServer) -> None:
    auth = JwtVerifier("http://127.0.0.1:9/jwks.json", issuer=ISSUER, audience=AUDIENCE)
    error = refused(auth, keys.token(roles="viewer"))
    assert error.reason == "JWKS_UNAVAILABLE"
