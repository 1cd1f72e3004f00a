"""Who is calling: bearer tokens from a token file, and JWTs of an OIDC provider.

A call carries ``authorization: Bearer CREDENTIAL`` (gRPC metadata, or the same HTTP header).
The credential is checked by one of two authenticators:

- :class:`TokenFile`, for small teams: a YAML file ``tokens: [{name, role, sha256}]`` that
  holds only the SHA-256 of each token. A presented token's hash is compared with every
  entry in constant time. The file is read again when it changes, so tokens are added and
  revoked without a restart.
- :class:`JwtVerifier`, for organisations: a JWT whose signature is checked against the
  provider's JWKS (PyJWT's ``PyJWKClient``: keys cached, fetched again for an unknown ``kid``),
  with ``exp``, ``nbf``, ``iss`` and ``aud`` enforced and the role read from a claim.

Neither ever puts the credential in a message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from control_plane.auth.policy import Role
from control_plane.errors import PermissionDeniedError, UnauthenticatedError, UnavailableError

log = logging.getLogger("raypipe.auth")

#: The JWT signature algorithms accepted: asymmetric only (never ``none``, never a shared
#: secret a JWKS could be confused with).
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


@dataclass(frozen=True)
class Principal:
    """The caller: its name (a token's name, a JWT's subject), its role and how it proved it
    (``token``, ``jwt``, or ``none`` when the server runs without authentication)."""

    name: str
    role: Role
    via: str


def token_digest(token: str) -> str:
    """The SHA-256 (lowercase hex) of a token, as a token file keeps it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe, with a ``rpt_`` prefix that secret
    scanners can match."""
    return f"rpt_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class TokenEntry:
    name: str
    role: Role
    sha256: str


def parse_token_file(text: str, source: str) -> list[TokenEntry]:
    """The entries of a token file; ValueError naming the entry and field that is wrong."""
    data = yaml.safe_load(text) if text.strip() else {"tokens": []}
    if not isinstance(data, dict) or not isinstance(data.get("tokens", []), list):
        raise ValueError(f"{source}: expected a mapping with a list `tokens`")
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for i, item in enumerate(data.get("tokens") or []):
        where = f"{source}: tokens[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping with name, role and sha256")
        name, role, digest = item.get("name"), item.get("role"), item.get("sha256")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{where}.name: {name!r} is not a name ([A-Za-z0-9._@-], 1-128)")
        if name in names:
            raise ValueError(f"{where}.name: {name!r} appears twice")
        try:
            parsed = Role.parse(str(role))
        except ValueError as exc:
            raise ValueError(f"{where}.role: {exc}") from None
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"{where}.sha256: expected 64 lowercase hex digits")
        names.add(name)
        entries.append(TokenEntry(name, parsed, digest))
    return entries


def append_token(path: Path, name: str, role: Role) -> str:
    """Add a new token to the file (created mode 0600 if missing) and return the token; only
    its hash is written."""
    existing = parse_token_file(path.read_text(), str(path)) if path.exists() else []
    if any(e.name == name for e in existing):
        raise ValueError(f"{path}: a token named {name!r} exists already; revoke it first")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a name ([A-Za-z0-9._@-], 1-128)")
    token = new_token()
    entries = [*existing, TokenEntry(name, role, token_digest(token))]
    body = yaml.safe_dump(
        {"tokens": [{"name": e.name, "role": e.role.label, "sha256": e.sha256} for e in entries]},
        sort_keys=False,
    )
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# raypipe bearer tokens: SHA-256 hashes only (raypipe tokens create)\n")
        out.write(body)
    os.replace(tmp, path)
    return token


class TokenFile:
    """Bearer tokens whose hashes are listed in a YAML file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []
        self._load()  # a bad file fails at start-up, not at the first call

    def _load(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        entries = parse_token_file(self.path.read_text(), str(self.path))
        self._entries, self._stamp = entries, stamp
        log.info("loaded %d bearer token(s) from %s", len(entries), self.path)

    def _current(self) -> list[TokenEntry]:
        with self._lock:
            try:
                self._load()
            except (OSError, ValueError) as exc:  # keep serving the last good file
                log.error("token file %s not reloaded: %s", self.path, exc)
            return self._entries

    def authenticate(self, token: str) -> Principal:
        digest = token_digest(token)
        found: TokenEntry | None = None
        for entry in self._current():  # every entry compared: no early exit to time
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        if found is None:
            raise UnauthenticatedError(
                "the bearer token is not known to this server", reason="TOKEN_UNKNOWN"
            )
        return Principal(found.name, found.role, "token")


class JwtVerifier:
    """JWTs signed by a key of the provider's JWKS, of one issuer and for one audience."""

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        role_claim: str = "role",
        leeway_s: float = 30.0,
        refresh_cooldown_s: float = 30.0,
    ) -> None:
        """``leeway_s``: clock skew allowed on exp and nbf. ``refresh_cooldown_s``: the JWKS is
        fetched again for an unknown kid at most this often (tokens with made-up kids cannot
        make the server hammer the provider)."""
        import jwt

        self._jwt = jwt
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_keys=True,
            lifespan=300,
            timeout=10,
            cooldown_duration=refresh_cooldown_s,
        )
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.leeway_s = leeway_s

    def authenticate(self, token: str) -> Principal:
        jwt = self._jwt
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(JWT_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("the JWKS cannot be fetched: %s", exc)
            raise UnavailableError(
                "the identity provider's signing keys cannot be fetched right now; retry",
                reason="JWKS_UNAVAILABLE",
            ) from None
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("the token has expired", reason="TOKEN_EXPIRED") from None
        except jwt.ImmatureSignatureError:
            raise UnauthenticatedError(
                "the token is not valid yet (nbf or iat in the future)",
                reason="TOKEN_NOT_YET_VALID",
            ) from None
        except jwt.InvalidIssuerError:
            raise UnauthenticatedError(
                f"the token was not issued by {self.issuer}", reason="TOKEN_WRONG_ISSUER"
            ) from None
        except jwt.InvalidAudienceError:
            raise UnauthenticatedError(
                f"the token is not meant for {self.audience}", reason="TOKEN_WRONG_AUDIENCE"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthenticatedError(
                f"the token has no {exc.claim} claim", reason="TOKEN_MALFORMED"
            ) from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.PyJWKClientError):
            raise UnauthenticatedError(
                "the token is not signed by a key of the issuer", reason="TOKEN_INVALID_SIGNATURE"
            ) from None
        except jwt.InvalidTokenError:
            raise UnauthenticatedError(
                "the token is not a valid JWT", reason="TOKEN_MALFORMED"
            ) from None
        name = str(claims.get("sub") or claims.get("email") or "unknown")
        return Principal(name, self._role(claims, name), "jwt")

    def _role(self, claims: dict[str, Any], name: str) -> Role:
        """The highest known role among the claim's values (a string or a list of them)."""
        value = claims.get(self.role_claim)
        values: Iterable[Any] = value if isinstance(value, list) else [value]
        roles = []
        for item in values:
            try:
                roles.append(Role.parse(str(item)))
            except ValueError:
                continue
        if not roles:
            raise PermissionDeniedError(
                f"{name} has no raypipe role: the token's {self.role_claim!r} claim names none of "
                "viewer, operator, editor, admin",
                reason="NO_ROLE",
                metadata={"claim": self.role_claim},
            )
        return max(roles)
