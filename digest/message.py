"""MIME bytes for one digest: multipart/alternative (text, then HTML), bulk-sender headers, optional DKIM.

The message is assembled by hand (CRLF lines, base64 bodies via binascii) instead of through
``email.message`` and ``email.headerregistry``: those cost more than the whole per-message budget, and owning
the bytes makes the header rules explicit. No CR, LF or NUL from any input can reach a header: free text
(the subject, display names) is collapsed to one line and RFC 2047-encoded; structured values (addresses,
URLs, ids) that contain a control character or a delimiter are refused with a DigestError.
"""

from __future__ import annotations

import base64
import os
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from digest.dkim import DKIM_HEADERS, DkimSigner
from digest.errors import DigestError
from digest.models import RenderedEmail
from digest.stencil import WireDigest, base64_of, wire_bytes

__all__ = [
    "DKIM_HEADERS",
    "DkimSigner",
    "WireMessage",
    "assemble_message",
    "build_message",
    "make_message_id",
]

_CONTROLS = re.compile(r"[\x00-\x1f\x7f\x80-\x9f\u2028\u2029]")
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+\Z")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\Z")
_URL_CHARS = re.compile(r"^[\x21-\x7e]+\Z")
_B64_COLUMNS = 76
_B64_BLOCK_ROWS = 64
_B64_BLOCK = struct.Struct(f"{_B64_COLUMNS}s" * _B64_BLOCK_ROWS)
_ENCODED_WORD_BYTES = 39  # 52 base64 characters: "Subject: =?utf-8?b?…?=" stays under 78 columns


def make_message_id(domain: str) -> str:
    """A new globally unique Message-ID, ``<random@domain>`` (128 random bits)."""
    return f"<{os.urandom(16).hex()}@{_domain(domain, 'Message-ID domain')}>"


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who a message is from and to, and the list headers it carries."""

    sender: str
    recipient: str
    list_id: str
    #: None for a mail that is not a list mail (an admin alert): no List-Unsubscribe headers at all.
    unsubscribe_url: str | None
    unsubscribe_mailto: str | None = None
    message_id: str | None = None
    date: datetime | None = None


def build_message(
    rendered: RenderedEmail, envelope: Envelope, *, dkim: DkimSigner | None = None
) -> WireMessage:
    """The complete RFC 5322 message (CRLF line ends) for one rendered digest.

    ``sender`` may carry a display name (``Paper Digest <digest@example.org>``). ``date`` should be passed by
    the caller (nothing below the pipeline reads the clock); without it the current UTC time is used. A
    naive ``date`` is taken as UTC. Raises DigestError when an address, URL or id is unusable in a header.
    """
    parts = WireDigest(
        rendered.subject,
        rendered.shown,
        base64_of(wire_bytes(rendered.text)),
        base64_of(wire_bytes(rendered.html)),
    )
    return assemble_message(parts, envelope, dkim=dkim)


def assemble_message(parts: WireDigest, envelope: Envelope, *, dkim: DkimSigner | None = None) -> WireMessage:
    """``build_message`` from parts already as ``wire_bytes`` (digest.render.render_wire makes them)."""
    sender, recipient, list_id = envelope.sender, envelope.recipient, envelope.list_id
    unsubscribe_url, unsubscribe_mailto = envelope.unsubscribe_url, envelope.unsubscribe_mailto
    message_id, date = envelope.message_id, envelope.date
    from_header, from_domain = _address_header(sender, "sender")
    to_header, _ = _address_header(recipient, "recipient")
    if message_id is None:
        message_id = make_message_id(from_domain)
    elif not re.fullmatch(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>", message_id):
        raise DigestError(f"message id {message_id!r} must look like <id@domain>")
    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)

    list_headers = _unsubscribe_headers(unsubscribe_url, unsubscribe_mailto)

    # base64 lines never start with "--" nor contain "_". os.urandom is what secrets.token_hex calls, minus
    # three Python layers (per message, they showed in the profile).
    boundary = f"=_{os.urandom(12).hex()}"
    headers = [
        f"From: {from_header}",
        f"To: {to_header}",
        f"Subject: {_unstructured(parts.subject, 9)}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {message_id}",
        f"List-Id: <{_domain(list_id, 'list_id')}>",
        *list_headers,
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: OOF, AutoReply",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    b = boundary.encode("ascii")
    message = b"".join(
        (
            "\r\n".join(headers).encode("ascii"),
            b"\r\n\r\n--",
            b,
            b'\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            _lines76(parts.text64),
            b"\r\n--",
            b,
            b'\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
            _lines76(parts.html64),
            b"\r\n--",
            b,
            b"--\r\n",
        )
    )
    if dkim is not None:
        message = dkim.sign(message) + message
    return WireMessage(message)


class WireMessage(bytes):
    """Message bytes that are ready for DATA as they are: CRLF line ends only and no line that starts with
    "." (headers, base64 lines and boundaries never do). Only build_message makes them; mailer.prepare_data
    then skips its scans of the whole message."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------- helpers


def _unsubscribe_headers(url: str | None, mailto: str | None) -> list[str]:
    """List-Unsubscribe (RFC 2369, with the optional mailto) and RFC 8058's one-click; none without a URL."""
    if url is None:
        return []
    unsubscribe = f"<{_header_url(url, ('https', 'http'), 'unsubscribe URL')}>"
    if mailto:
        unsubscribe += f", <{_header_url(mailto, ('mailto',), 'unsubscribe mailto')}>"
    return [f"List-Unsubscribe: {unsubscribe}", "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]


def _base64_body(text: str) -> bytes:
    """A part's text as its base64 body: ``wire_bytes``, base64, 76-column lines."""
    return _lines76(base64_of(wire_bytes(text)))


def _lines76(encoded: bytes) -> bytes:
    """Base64 in 76-column lines, all in C: ``struct`` cuts the lines 64 at a time (a Python slice per line
    cost 11% of a run). Measured on a 30-paper digest (scripts/bench, bench_email): quoted-printable makes the
    HTML part 21% smaller but costs 2.6x the CPU of base64, and it would let lines start with "."
    (dot-stuffing) and carry scraped text's long lines."""
    n = len(encoded)
    size = _B64_BLOCK.size
    lines: list[bytes] = []
    for at in range(0, n - size + 1, size):
        lines += _B64_BLOCK.unpack_from(encoded, at)
    full = n - n % size
    rows, rest = divmod(n - full, _B64_COLUMNS)
    lines += _b64_rows(rows).unpack_from(encoded, full)
    if rest:
        lines.append(encoded[n - rest :])
    return b"\r\n".join(lines)


@lru_cache(maxsize=_B64_BLOCK_ROWS)
def _b64_rows(rows: int) -> struct.Struct:
    return struct.Struct(f"{_B64_COLUMNS}s" * rows)


@lru_cache(maxsize=1024)  # digests that share a rendering share a subject too (digest.stencil)
def _unstructured(value: str, used: int) -> str:
    """A free-text header value on one logical line: ASCII folded at spaces, else RFC 2047 encoded words."""
    text = " ".join(_CONTROLS.sub(" ", value).split())
    if text.isascii() and "=?" not in text:
        return _fold(text, used)
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _ENCODED_WORD_BYTES and chunk:
            words.append(_encoded_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append(_encoded_word("".join(chunk)))
    return "\r\n ".join(words)


def _encoded_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _fold(text: str, used: int) -> str:
    lines: list[str] = []
    line = ""
    width = 78 - used
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line, width = word, 77
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


@lru_cache(maxsize=256)  # the sender is the same on every message of a run
def _address_header(value: str, what: str) -> tuple[str, str]:
    """``Name <addr>`` (name RFC 2047-encoded when needed) and the address's domain, or DigestError."""
    if _CONTROLS.search(value):
        raise DigestError(f"{what} {value!r} contains a control character")
    # A bare address (every recipient) needs no parsing: parseaddr cost more than the rest of the headers.
    name, addr = ("", value) if _BARE_ADDRESS.match(value) else parseaddr(value)
    if not addr or addr.count("@") != 1:
        raise DigestError(f"{what} {value!r} is not an email address")
    local, domain = addr.rsplit("@", 1)
    if not _ATOM.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise DigestError(f"{what} {value!r}: the part before @ must be plain ASCII (no SMTPUTF8)")
    addr = f"{local}@{_domain(domain, what)}"
    name = " ".join(name.split())
    if not name:
        return addr, domain
    if name.isascii():
        if _ATOM.match(name.replace(" ", "")) and "." not in name:
            return f"{name} <{addr}>", domain
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>', domain
    return f"{_unstructured(name, len(what) + 2)} <{addr}>", domain


def _domain(value: str, what: str) -> str:
    """A DNS name for a header (internationalised names become IDNA A-labels), or DigestError."""
    candidate = value
    if not candidate.isascii():
        try:
            candidate = candidate.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise DigestError(f"{what} {value!r} is not a valid domain name") from exc
    if not _DOMAIN.match(candidate) or ".." in candidate or len(candidate) > 253:
        raise DigestError(f"{what} {value!r} is not a valid domain name")
    return candidate


def _header_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    """A URL fit for ``<…>`` in List-Unsubscribe: printable ASCII, no angle brackets, an allowed scheme."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in schemes:
        raise DigestError(f"{what} {url!r} must be a {' or '.join(schemes)} URL")
    if not _URL_CHARS.match(url) or "<" in url or ">" in url:
        raise DigestError(f"{what} {url!r} must be one line of printable ASCII without < or >")
    if scheme in ("http", "https") and not url.lower().startswith(f"{scheme}://"):
        raise DigestError(f"{what} {url!r} has no host")
    # RFC 2369: a comma separates the URLs of the header, so one inside a URL must be escaped.
    return url.replace(",", "%2C")
