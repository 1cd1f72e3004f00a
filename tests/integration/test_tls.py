"""TLS on a real `raypipe serve`, with certificates made here: gRPC and HTTPS with a bearer
token; a plaintext client refused; mutual TLS refusing a client without a certificate and
letting one with a certificate of its CA in, even on 0.0.0.0 with no other authentication;
the certificate reloaded on SIGHUP for new connections while open ones carry on."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

import raypipe
from control_plane.auth import Role, append_token
from ray_nodes.cluster import LocalHead
from tests.integration.conftest import ServerProcess
from tests.tls_certs import Ca


def start(tmp: Path, ray_head: LocalHead, *extra: str) -> ServerProcess:
    server = ServerProcess(
        tmp / "data",
        "--ray-address",
        ray_head.address,
        "--no-mlflow-tracking",
        *extra,
        env=ray_head.client_env(),
    )
    server.start()
    return server


def stop(server: ServerProcess) -> None:
    if server.proc is not None and server.proc.poll() is None:
        assert server.terminate(timeout=60) == 0


def https_post(url: str, ca: Path, body: dict[str, object], **headers: str) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return json.loads(response.read())


def served_serial(address: str, ca: Path, *, alpn: str | None = None) -> int:
    """The serial number of the certificate a new TLS connection to ``address`` gets."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return Ca(tmp_path_factory.mktemp("pki"))


def test_tls_with_a_token_over_grpc_and_https_and_reload_on_sighup(
    pki: Ca, tmp_path: Path, ray_head: LocalHead
) -> None:
    server_cert = pki.issue("raypipe-server", file_stem="server")
    tokens = tmp_path / "tokens.yaml"
    token = append_token(tokens, "ci", Role.EDITOR)
    server = start(
        tmp_path,
        ray_head,
        "--tls-cert",
        str(server_cert.cert),
        "--tls-key",
        str(server_cert.key),
        "--auth-tokens",
        str(tokens),
    )
    try:
        assert server.http_address.startswith("https://127.0.0.1:")
        assert server.web_ui == server.http_address + "/"
        with raypipe.Client(server.address, token=token, tls_ca=pki.path) as client:
            client.apply({"nodes": [{"id": "a", "type": "noop"}]}, pipeline="over-tls")
            # Plaintext to a TLS port gets nowhere.
            with (
                raypipe.Client(server.address, token=token, retries=0, timeout=5) as plain,
                pytest.raises(raypipe.UnavailableError),
            ):
                plain.get_pipeline("over-tls")
            body = https_post(
                f"{server.http_address}/raypipe.v1.PipelineService/GetPipeline",
                pki.path,
                {"name": "pipelines/over-tls"},
                Authorization=f"Bearer {token}",
            )
            assert body["pipeline"]["name"] == "pipelines/over-tls"  # type: ignore[index]

            # A new certificate in the same files, then SIGHUP: new connections get it, on both
            # ports; the client's open connection carries on.
            http_hostport = server.http_address.removeprefix("https://")
            assert served_serial(server.address, pki.path, alpn="h2") == server_cert.serial
            assert served_serial(http_hostport, pki.path) == server_cert.serial
            renewed = pki.issue("raypipe-server", file_stem="server")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while served_serial(server.address, pki.path, alpn="h2") != renewed.serial:
                assert time.monotonic() < deadline, "the gRPC port kept the old certificate"
                time.sleep(0.2)
            assert served_serial(http_hostport, pki.path) == renewed.serial
            assert client.get_pipeline("over-tls").name == "pipelines/over-tls"
        assert "TLS certificate reloaded" in server.log.read_text()
    finally:
        stop(server)


@pytest.fixture(scope="module")
def mutual(
    pki: Ca, tmp_path_factory: pytest.TempPathFactory, ray_head: LocalHead
) -> Iterator[ServerProcess]:
    """Mutual TLS and nothing else, on every interface: the CA is the authentication."""
    tmp = tmp_path_factory.mktemp("mtls")
    server_cert = pki.issue("raypipe-mtls-server", file_stem="mtls-server")
    server = start(
        tmp,
        ray_head,
        "--host",
        "0.0.0.0",
        "--tls-cert",
        str(server_cert.cert),
        "--tls-key",
        str(server_cert.key),
        "--tls-client-ca",
        str(pki.path),
    )
    server.address = server.address.replace("0.0.0.0", "127.0.0.1")
    server.http_address = server.http_address.replace("0.0.0.0", "127.0.0.1")
    yield server
    stop(server)


def test_mutual_tls_refuses_clients_without_a_certificate(pki: Ca, mutual: ServerProcess) -> None:
    with (
        raypipe.Client(mutual.address, tls_ca=pki.path, retries=0, timeout=10) as anonymous,
        pytest.raises(raypipe.UnavailableError),
    ):
        anonymous.list_node_types()
    context = ssl.create_default_context(cafile=str(pki.path))
    request = urllib.request.Request(
        f"{mutual.http_address}/raypipe.v1.PipelineService/ListNodeTypes",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(request, timeout=10, context=context).read()
    # Another CA's certificate is refused as well.
    stranger = Ca(pki.directory / "other", name="another CA").issue("intruder", client=True)
    with (
        raypipe.Client(
            mutual.address,
            tls_ca=pki.path,
            tls_cert=stranger.cert,
            tls_key=stranger.key,
            retries=0,
            timeout=10,
        ) as intruder,
        pytest.raises(raypipe.UnavailableError),
    ):
        intruder.list_node_types()


def test_mutual_tls_lets_a_client_certificate_in_over_grpc_and_https(
    pki: Ca, mutual: ServerProcess
) -> None:
    robot = pki.issue("robot.ci.example", client=True)
    with raypipe.Client(
        mutual.address, tls_ca=pki.path, tls_cert=robot.cert, tls_key=robot.key
    ) as client:
        assert any(t.type == "noop" for t in client.list_node_types())
    context = ssl.create_default_context(cafile=str(pki.path))
    context.load_cert_chain(robot.cert, robot.key)
    request = urllib.request.Request(
        f"{mutual.http_address}/raypipe.v1.PipelineService/ListNodeTypes",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert any(t["type"] == "noop" for t in json.loads(response.read())["nodeTypes"])
