"""The one check every call goes through, over gRPC and HTTP alike: who is calling
(credentials.py) and whether their role allows the method for this request (policy.py)."""

from __future__ import annotations

import contextvars
import logging

from control_plane.auth.credentials import JwtVerifier, Principal, TokenFile
from control_plane.auth.policy import OPEN_METHODS, Role, required_role
from control_plane.errors import ApiError, PermissionDeniedError, UnauthenticatedError

log = logging.getLogger("raypipe.auth")

#: The principal of the call being served (set for the servicer's code, for creator fields).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "raypipe_principal", default=None
)

#: The principal of what the scheduler starts: its runs are its own.
SCHEDULER = "system:scheduler"


def caller_name() -> str:
    """The name of the call's principal, for ``creator`` fields; ``system`` outside a call."""
    principal = current_principal.get()
    return principal.name if principal is not None else "system"


#: The caller when the server runs without authentication (loopback, or
#: --allow-unauthenticated): everyone may do everything.
ANONYMOUS = Principal("anonymous", Role.ADMIN, "none")


class Authorizer:
    """Authenticates a call's bearer credential and checks its role against the method's
    rule. Without authenticators the server is open: every caller is :data:`ANONYMOUS`, but a
    method without a rule is still refused."""

    def __init__(self, *, tokens: TokenFile | None = None, jwt: JwtVerifier | None = None) -> None:
        self.tokens = tokens
        self.jwt = jwt

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.jwt is not None

    def authorize(
        self, method: str, authorization: str | None, request: object, peer: str = ""
    ) -> Principal:
        """The caller of ``method``, allowed to make this ``request``; UnauthenticatedError or
        PermissionDeniedError otherwise. ``peer`` is the identity of a verified TLS client
        certificate: with no authenticator set, mutual TLS alone names the caller (who may
        then do everything); with one, the bearer credential decides."""
        if method in OPEN_METHODS:
            return ANONYMOUS if not self.enabled else Principal("anonymous", Role.VIEWER, "none")
        try:
            needed = required_role(method, request)
            if self.enabled:
                principal = self.authenticate(authorization)
            elif peer:
                principal = Principal(peer, Role.ADMIN, "mtls")
            else:
                principal = ANONYMOUS
            if principal.role < needed:
                raise PermissionDeniedError(
                    f"{principal.name} ({principal.role.label}) may not call {method.rsplit('/', 1)[-1]}: "
                    f"it needs the {needed.label} role",
                    reason="ROLE_TOO_LOW",
                    metadata={"role": principal.role.label, "required": needed.label},
                )
        except ApiError as exc:
            log.info("refused %s: %s (%s)", method, exc.reason, exc.message)
            raise
        return principal

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise UnauthenticatedError(
                "this server requires a bearer token: send the header "
                "`authorization: Bearer TOKEN` (raypipe --token, RAYPIPE_TOKEN)",
                reason="TOKEN_MISSING",
            )
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential or " " in credential:
            raise UnauthenticatedError(
                "the authorization header must be `Bearer TOKEN`", reason="TOKEN_MALFORMED"
            )
        if self.jwt is not None and credential.count(".") == 2:
            return self.jwt.authenticate(credential)
        if self.tokens is not None:
            return self.tokens.authenticate(credential)
        raise UnauthenticatedError(
            "the bearer token is not a JWT, and this server accepts only JWTs",
            reason="TOKEN_MALFORMED",
        )
