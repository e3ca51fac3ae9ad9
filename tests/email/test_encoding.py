"""Body encoding and the DATA payload: whatever we encode decodes back to the same text, and the fast paths
(C line cutting, build_message's clean WireMessage) give exactly what the slow, obvious code gives."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.mailer import prepare_data
from digest.message import Envelope, WireMessage, _base64_body, build_message
from digest.models import RenderedEmail

WHEN = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)
# Line breaks of every kind, NUL, and runs long enough to cross the 64-line blocks the encoder cuts at once.
TEXT = st.lists(
    st.one_of(
        st.characters(), st.sampled_from(["\r\n", "\r", "\n", "\0", ".", " ", "é", "\u2028", "x" * 97])
    ),
    max_size=400,
).map("".join) | st.builds(lambda n, tail: "y" * n + tail, st.integers(0, 12_000), st.text(max_size=5))


def normalised(text: str) -> bytes:
    """What the body must carry: UTF-8, CRLF line ends, no NUL; a lone surrogate as "?"."""
    data = text.encode("utf-8", "replace").replace(b"\0", b"")
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


@settings(max_examples=300)
@given(TEXT)
def test_a_base64_body_decodes_back_to_the_text_in_76_column_lines(text: str) -> None:
    body = _base64_body(text)
    lines = body.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert all(len(line) == 76 for line in lines[:-1]), "only the last line may be short"
    assert re.fullmatch(rb"[A-Za-z0-9+/=\r\n]*", body)
    assert base64.b64decode(b"".join(lines), validate=True) == normalised(text)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT)
def test_both_parts_of_a_built_message_decode_back_to_what_was_rendered(text: str, html: str) -> None:
    raw = build_message(
        RenderedEmail(subject="Digest", text=text, html=html),
        Envelope(
            sender="digest@example.org",
            recipient="ada@example.org",
            list_id="paper-digest.example.org",
            unsubscribe_url="https://digest.example.org/u/T",
            date=WHEN,
        ),
    )
    plain, rich = parse(raw).iter_parts()
    assert plain.get_payload(decode=True) == normalised(text)
    assert rich.get_payload(decode=True) == normalised(html)
    assert plain.get_content_charset() == rich.get_content_charset() == "utf-8"


def reference_prepare(message: bytes) -> bytes:
    """The obvious DATA preparation (regular expressions), to hold the fast one to."""
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", b"\0", b"\xff"]), max_size=40)
)
def test_prepare_data_matches_the_obvious_implementation(parts: list[bytes]) -> None:
    message = b"".join(parts)
    assert prepare_data(message) == reference_prepare(message)


@settings(max_examples=60, deadline=None)
@given(TEXT, TEXT, st.text(max_size=120))
def test_a_built_message_needs_no_preparation_beyond_the_final_dot(
    text: str, html: str, subject: str
) -> None:
    raw = build_message(
        RenderedEmail(subject=subject or "x", text=text, html=html),
        Envelope(
            sender="Digest <digest@example.org>",
            recipient="ada@example.org",
            list_id="paper-digest.example.org",
            unsubscribe_url="https://digest.example.org/u/T",
            date=WHEN,
        ),
    )
    assert type(raw) is WireMessage
    # The fast path (no scan) gives what the full scan of the same bytes gives.
    assert prepare_data(raw) == prepare_data(bytes(raw)) == reference_prepare(bytes(raw))
