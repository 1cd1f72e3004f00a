"""TLS for both ports: the server's certificate and key, and for mutual TLS the CA that
client certificates must chain to, read from files and read again on SIGHUP (or when the
files change) without dropping a connection: gRPC asks for the current configuration at each
new handshake (``grpc.dynamic_ssl_server_credentials``), and the HTTP port wraps each new
connection with the current ``ssl.SSLContext``. Connections already open keep the
certificate they started with."""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("raypipe.tls")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key, and optionally the CA bundle that
    client certificates must chain to (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class TlsConfig:
    """The current TLS material of :class:`TlsFiles`, for gRPC and for the HTTP port."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._generation = 0
        self._served_generation = -1
        self._pem: tuple[bytes, bytes, bytes | None] = (b"", b"", None)
        self._context: ssl.SSLContext | None = None
        self.reload(force=True)  # bad files fail at start-up

    @property
    def mutual(self) -> bool:
        return self.files.client_ca is not None

    def _paths(self) -> list[Path]:
        return [p for p in (self.files.cert, self.files.key, self.files.client_ca) if p is not None]

    def reload(self, *, force: bool = False) -> bool:
        """Read the files again if they changed (or ``force``); True when new material is in
        use. A file that cannot be read or used keeps the previous material (logged)."""
        with self._lock:
            try:
                stamp = tuple((s.st_mtime_ns, s.st_size) for s in (p.stat() for p in self._paths()))
                if not force and stamp == self._stamp:
                    return False
                cert, key = self.files.cert.read_bytes(), self.files.key.read_bytes()
                ca = self.files.client_ca.read_bytes() if self.files.client_ca else None
                context = self._make_context()
            except (OSError, ssl.SSLError, ValueError) as exc:
                if not self._context:
                    raise ValueError(f"TLS files cannot be used: {exc}") from exc
                log.error("TLS files not reloaded, the previous ones stay in use: %s", exc)
                return False
            self._pem, self._context, self._stamp = (cert, key, ca), context, stamp
            self._generation += 1
            if self._generation > 1:
                log.info("TLS certificate reloaded from %s", self.files.cert)
            return True

    def _make_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.files.cert, self.files.key)
        if self.files.client_ca is not None:
            context.load_verify_locations(self.files.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The HTTP port's context for the next connection (the files read again first if
        they changed)."""
        self.reload()
        assert self._context is not None
        return self._context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that take up reloaded material at the next handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            self._fetch,
            require_client_authentication=self.mutual,
        )

    def _grpc_configuration(self) -> Any:
        with self._lock:
            cert, key, ca = self._pem
            self._served_generation = self._generation
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self) -> Any:
        # Called by gRPC before each handshake: None keeps the configuration it has.
        self.reload()
        if self._served_generation == self._generation:
            return None
        return self._grpc_configuration()


def peer_identity(auth_context: dict[str, list[bytes]]) -> str:
    """A client certificate's identity from gRPC's auth context: its first subject
    alternative name, else its common name; "" without a verified certificate."""
    for key in ("x509_subject_alternative_name", "x509_common_name"):
        values = auth_context.get(key) or []
        if values:
            return values[0].decode(errors="replace")
    return ""


def peer_identity_from_cert(cert: dict[str, Any] | None) -> str:
    """The same for the HTTP port's ``SSLSocket.getpeercert()``."""
    if not cert:
        return ""
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "URI", "email", "IP Address"):
            return str(value)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
