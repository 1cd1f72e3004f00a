"""Authentication and authorization of every call (docs/security.md): bearer tokens from a
token file or JWTs of an OIDC provider, four roles, and one table of who may call what,
checked by one gRPC interceptor and by the HTTP port's adapter."""

from control_plane.auth.authorizer import (
    ANONYMOUS,
    SCHEDULER,
    Authorizer,
    caller_name,
    current_principal,
)
from control_plane.auth.credentials import (
    JwtVerifier,
    Principal,
    TokenFile,
    append_token,
    new_token,
    token_digest,
)
from control_plane.auth.policy import OPEN_METHODS, RULES, Role, required_role

__all__ = [
    "ANONYMOUS",
    "OPEN_METHODS",
    "RULES",
    "SCHEDULER",
    "Authorizer",
    "JwtVerifier",
    "Principal",
    "Role",
    "TokenFile",
    "append_token",
    "caller_name",
    "current_principal",
    "new_token",
    "required_role",
    "token_digest",
]
