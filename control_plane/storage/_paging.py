"""Page sizes and opaque page tokens for keyset pagination.

A token is the urlsafe base64 of a small JSON object: the sort key of the last item served
(``k``) and a digest of the query it belongs to (``q``: the list, its parent and its filter).
Reusing a token with another filter would silently skip or repeat items, so it is refused,
as AIP-158 asks. Tokens are not signed: they hold nothing a caller may not see, and a forged
one only moves the starting point of the caller's own list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from control_plane.errors import InvalidArgumentError
from control_plane.storage.repository import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

__all__ = ["decode_token", "encode_token", "page_limit", "query_digest"]


def page_limit(page_size: int) -> int:
    """The number of items a page holds: 0 means the default, more than the maximum the maximum.

    Raises:
        InvalidArgumentError: On ``page_size`` when it is negative.
    """
    if page_size < 0:
        raise InvalidArgumentError.for_field(
            "page_size",
            f"must not be negative (got {page_size}); 0 means the default of {DEFAULT_PAGE_SIZE}",
        )
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def query_digest(*parts: object) -> str:
    """A short digest of what a list call asked for, stored in and checked against its tokens."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(digest: str, key: list[Any]) -> str:
    """The next_page_token that resumes after the item whose sort key is ``key``."""
    raw = json.dumps({"q": digest, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str, digest: str, shape: tuple[type, ...]) -> list[Any] | None:
    """The sort key a page token resumes after; None for an empty token (the first page).

    Args:
        token: The request's ``page_token``.
        digest: :func:`query_digest` of the current request.
        shape: The types of the key's parts, such as ``(int, str)``.

    Raises:
        InvalidArgumentError: On ``page_token`` when it is malformed or was issued for a
            different query.
    """
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise _bad("is not a page token issued by this server") from exc
    if not isinstance(data, dict):
        raise _bad("is not a page token issued by this server")
    key = data.get("k")
    # bool is an int in Python; a key part of the wrong type means a hand-made token.
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(
            isinstance(part, kind) and not isinstance(part, bool)
            for part, kind in zip(key, shape, strict=True)
        )
    ):
        raise _bad("is not a page token issued by this server")
    if data.get("q") != digest:
        raise _bad(
            "was issued for a different list or filter; repeat the request's other fields "
            "unchanged when you pass next_page_token, or start again without a token"
        )
    return key


def _bad(description: str) -> InvalidArgumentError:
    return InvalidArgumentError.for_field("page_token", description)
