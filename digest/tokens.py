"""Signed tokens for the links in mails (itsdangerous, one salt per purpose). Pure: no I/O.

A token carries the subscriber id and a version; bumping the subscriber's ``token_version`` revokes
every link mailed before.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.errors import TokenError

Purpose = Literal["confirm", "manage", "unsubscribe"]

#: How long each kind of link stays valid, in seconds (None: no expiry).
MAX_AGE: dict[str, int | None] = {
    "confirm": 3 * 24 * 3600,
    "manage": 180 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,  # RFC 8058 asks for a long life; at least 60 days.
}


@lru_cache(maxsize=16)
def _serializer(secret: str, purpose: Purpose) -> URLSafeTimedSerializer:
    # Cached: every digest signs two links, and building a serializer per link costs more than signing.
    return URLSafeTimedSerializer(secret, salt=f"paper-digest/{purpose}")


def make_token(secret: str, purpose: Purpose, subscriber_id: int, version: int = 0) -> str:
    """A URL-safe signed token for ``purpose``."""
    return str(_serializer(secret, purpose).dumps([subscriber_id, version]))


def read_token(secret: str, purpose: Purpose, token: str, *, max_age: int | None = None) -> tuple[int, int]:
    """(subscriber_id, version) from a token; TokenError when forged, damaged, expired or of another purpose."""
    age = MAX_AGE[purpose] if max_age is None else max_age
    try:
        value = _serializer(secret, purpose).loads(token, max_age=age)
    except SignatureExpired:
        raise TokenError("this link has expired") from None
    except BadSignature:
        raise TokenError("this link is not valid") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TokenError("this link is not valid")
    return value[0], value[1]
