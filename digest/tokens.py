"""Signed tokens for the links in mails (itsdangerous, one salt per purpose). Pure: no I/O.

A token carries the subscriber id and a version; bumping the subscriber's ``token_version`` revokes
every link mailed before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date
from functools import lru_cache
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, Signer, TimestampSigner

from digest.errors import TokenError

Purpose = Literal["confirm", "manage", "unsubscribe", "digest", "archive", "feed", "more"]

#: How long each kind of link stays valid, in seconds (None: no expiry).
MAX_AGE: dict[str, int | None] = {
    "confirm": 3 * 24 * 3600,
    "manage": 180 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,  # RFC 8058 asks for a long life; at least 60 days.
    # Read-only pages and a feed URL pasted into a reader: they live until "delete all my data".
    "digest": None,
    "archive": None,
    "feed": None,
    "more": 180 * 24 * 3600,  # "More like this" under each paper: as long as the manage link
}


class _Signer(TimestampSigner):
    """itsdangerous's TimestampSigner with its key derived once, not once per link (every digest signs four)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        key: bytes | None = getattr(self, "_derived", None)
        if key is None:
            key = self._derived = super().derive_key()
        return key


@lru_cache(maxsize=16)
def _signer(secret: str, purpose: Purpose) -> TimestampSigner:
    # A plain "id.version" payload with a timestamp signer: every digest signs two links, and a JSON
    # serializer (dumps, zlib attempt, base64) costs several times the signature itself.
    # hashlib.sha1 is itsdangerous's default algorithm (the same signatures), passed as the OpenSSL function:
    # its default, a Python wrapper, sends every HMAC down the slower pure-Python path of ``hmac``.
    return _Signer(secret, salt=f"paper-digest/{purpose}", digest_method=hashlib.sha1)


def make_token(secret: str, purpose: Purpose, subscriber_id: int, version: int = 0) -> str:
    """A URL-safe signed token for ``purpose`` (``id.version.timestamp.signature``)."""
    return _signer(secret, purpose).sign(f"{subscriber_id}.{version}").decode("ascii")


def read_token(secret: str, purpose: Purpose, token: str, *, max_age: int | None = None) -> tuple[int, int]:
    """(subscriber_id, version) from a token; TokenError when forged, damaged, expired or of another purpose."""
    age = MAX_AGE[purpose] if max_age is None else max_age
    try:
        value = _signer(secret, purpose).unsign(token, max_age=age).decode("ascii")
    except SignatureExpired:
        raise TokenError("this link has expired", "expired") from None
    except (BadSignature, UnicodeError):
        raise TokenError("this link is not valid") from None
    sid, _, version = value.partition(".")
    # Bounded: a number too large for the database's integer must be a 4xx, not a crash.
    if (
        not (sid.isdigit() and version.isdigit() and sid.isascii() and version.isascii())
        or max(len(sid), len(version)) > 15
    ):
        raise TokenError("this link is not valid")
    return int(sid), int(version)


def make_digest_token(secret: str, subscriber_id: int, version: int, day: date) -> str:
    """The token of one digest's web view: the subscriber and the digest's local date (the delivery key)."""
    # YYYYMMDD as one integer: strftime would cost more than the rest of the payload (one link per mail).
    payload = f"{subscriber_id}.{version}.{day.year * 10000 + day.month * 100 + day.day}"
    return _signer(secret, "digest").sign(payload).decode("ascii")


def read_digest_token(secret: str, token: str) -> tuple[int, int, date]:
    """(subscriber_id, version, day) from a digest token; TokenError when forged or damaged."""
    try:
        value = _signer(secret, "digest").unsign(token).decode("ascii")
    except (BadSignature, UnicodeError):
        raise TokenError("this link is not valid") from None
    parts = value.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 15 for p in parts):
        raise TokenError("this link is not valid")
    try:
        day = date(int(parts[2][:4]), int(parts[2][4:6]), int(parts[2][6:]))
    except ValueError:
        raise TokenError("this link is not valid") from None
    return int(parts[0]), int(parts[1]), day


_BOUNCE_SALT = "paper-digest/bounce"
#: 80 bits of signature: the whole token must fit in an address's local part (64 characters, RFC 5321).
_BOUNCE_SIG_BYTES = 10


@lru_cache(maxsize=16)
def _bounce_key(secret: str) -> bytes:
    # itsdangerous derives the purpose's key once; the per-delivery HMAC is then one call (every digest
    # signs one envelope sender).
    return bytes(Signer(secret, salt=_BOUNCE_SALT, digest_method=hashlib.sha256).derive_key())


def make_bounce_token(secret: str, delivery_id: int) -> str:
    """``<id>-<signature>`` for a VERP envelope sender: lower-case letters and digits only, because some
    MTAs change the case of a local part; it never expires (a bounce may come days later)."""
    return f"{delivery_id}-{_bounce_signature(secret, delivery_id)}"


def read_bounce_token(secret: str, token: str) -> int:
    """The delivery id in a bounce token; TokenError when it is forged or damaged."""
    sid, _, signature = token.lower().partition("-")
    if not (sid.isdigit() and sid.isascii() and len(sid) <= 15):
        raise TokenError("not a bounce token")
    if not hmac.compare_digest(signature, _bounce_signature(secret, int(sid))):
        raise TokenError("the bounce token's signature does not match")
    return int(sid)


def _bounce_signature(secret: str, delivery_id: int) -> str:
    raw = hmac.new(_bounce_key(secret), str(delivery_id).encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(raw[:_BOUNCE_SIG_BYTES]).decode("ascii").lower()
