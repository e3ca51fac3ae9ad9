"""The MIME message: headers for bulk senders, round trip through the stdlib parser, header safety, DKIM."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, date, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from email_helpers import context, load_day, match
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import ConfigError, DigestError
from digest.message import DKIM_HEADERS, DkimSigner, Envelope, build_message, make_message_id
from digest.models import RenderedEmail, Rule
from digest.render import render_digest

SENDER = "Paper Digest <digest@example.org>"
UNSUB = "https://digest.example.org/u/TOKEN"
WHEN = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)


def rendered() -> RenderedEmail:
    agents = Rule("agent*", name="agents")
    papers = match(load_day("2026-08-21"), [(agents, ("agent",))])
    return render_digest(context(papers, [agents], run_date=date(2026, 8, 21)))


def build(r: RenderedEmail | None = None, **kw: object) -> bytes:
    args: dict[str, object] = {
        "sender": SENDER,
        "recipient": "ada@example.org",
        "list_id": "paper-digest.example.org",
        "unsubscribe_url": UNSUB,
        "date": WHEN,
    }
    args.update(kw)
    dkim = args.pop("dkim", None)
    return build_message(r or rendered(), Envelope(**args), dkim=dkim)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def header_names(raw: bytes) -> list[str]:
    return [
        line.split(b":", 1)[0].decode()
        for line in header_block(raw).split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]


# ---------------------------------------------------------------------------------------------- structure


def test_the_message_parses_back_with_every_header_and_both_parts() -> None:
    r = rendered()
    raw = build(r, unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe")
    msg = parse(raw)
    assert msg["From"] == SENDER
    assert msg["To"] == "ada@example.org"
    assert msg["Subject"] == r.subject
    assert msg["Date"].datetime == WHEN
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", msg["Message-ID"])
    assert msg["List-Id"] == "<paper-digest.example.org>"
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == r.text
    assert parts[1].get_content().replace("\r\n", "\n") == r.html
    assert msg.defects == [] and all(p.defects == [] for p in parts)


def test_every_line_ends_in_crlf_and_stays_within_smtp_limits() -> None:
    raw = build()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert raw.isascii()


def test_each_message_gets_a_new_message_id_unless_one_is_given() -> None:
    r = rendered()
    ids = {parse(build(r))["Message-ID"] for _ in range(20)}
    assert len(ids) == 20
    assert parse(build(r, message_id="<fixed@example.org>"))["Message-ID"] == "<fixed@example.org>"
    assert make_message_id("example.org") != make_message_id("example.org")
    with pytest.raises(DigestError):
        build(r, message_id="<x@example.org>\r\nBcc: evil@example.net")


def test_a_date_in_another_zone_or_without_one_is_written_correctly() -> None:
    r = rendered()
    paris = datetime(2026, 8, 21, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse(build(r, date=paris))["Date"].datetime == WHEN
    assert parse(build(r, date=datetime(2026, 8, 21, 7, 0)))["Date"].datetime == WHEN


def test_a_non_ascii_subject_and_sender_name_are_rfc2047_encoded() -> None:
    r = RenderedEmail(subject="3 nouveaux articles : « diffusion » — 日本語 " * 3, text="t", html="<p>h</p>")
    raw = build(r, sender="Bülletin des Papiers <digest@example.org>")
    assert raw.isascii()
    msg = parse(raw)
    assert msg["Subject"] == " ".join(r.subject.split())
    assert msg["From"].addresses[0].display_name == "Bülletin des Papiers"
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"


def test_an_international_domain_is_written_as_idna() -> None:
    msg = parse(build(recipient="ada@bücher.example"))
    assert msg["To"] == "ada@xn--bcher-kva.example"


# ---------------------------------------------------------------------------------------------- header safety


HEADER = re.compile(rb"^[A-Za-z-]+: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*$")
EXPECTED_NAMES = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
]


@settings(max_examples=150, deadline=None)
@given(subject=st.text(max_size=300), name=st.text(max_size=60))
def test_no_subject_or_display_name_can_add_a_header_line(subject: str, name: str) -> None:
    r = RenderedEmail(subject=subject, text="t", html="<p>h</p>")
    sender = f'"{name}" <digest@example.org>'
    try:
        raw = build(r, sender=sender)
    except DigestError:
        return  # refusing is fine; injecting is not
    assert header_names(raw) == EXPECTED_NAMES
    assert b"\x00" not in header_block(raw)
    for line in re.split(rb"\r\n(?![ \t])", header_block(raw)):
        assert HEADER.match(line), line
    assert parse(raw)["Subject"] == " ".join(
        re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", subject).split()
    )


@settings(max_examples=150, deadline=None)
@given(
    recipient=st.text(max_size=40).map(lambda s: f"ada{s}@example.org"),
    url=st.text(max_size=30).map(lambda s: f"https://digest.example.org/u/{s}"),
    list_id=st.text(max_size=20).map(lambda s: f"list{s}.example.org"),
)
def test_no_address_url_or_list_id_can_add_a_header_line(recipient: str, url: str, list_id: str) -> None:
    try:
        raw = build(RenderedEmail("s", "t", "h"), recipient=recipient, unsubscribe_url=url, list_id=list_id)
    except DigestError:
        return
    assert header_names(raw) == EXPECTED_NAMES
    assert b"\x00" not in header_block(raw)
    for line in re.split(rb"\r\n(?![ \t])", header_block(raw)):
        assert HEADER.match(line), line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipient", "ada@example.org\r\nBcc: all@example.org"),
        ("recipient", "ada@example.org\nX-Evil: 1"),
        ("recipient", "not an address"),
        ("sender", "Digest <digest@example.org>\x00"),
        ("unsubscribe_url", "https://digest.example.org/u/T\r\nBcc: x@example.org"),
        ("unsubscribe_url", "javascript:alert(1)"),
        ("unsubscribe_url", "https://digest.example.org/u/a>b"),
        # A regex '$' also matches before a final newline: each check must hold to the very end.
        ("unsubscribe_url", "https://digest.example.org/u/T\n"),
        ("list_id", "paper-digest.example.org\n"),
        ("unsubscribe_mailto", "https://not-a-mailto.example.org"),
        ("list_id", "paper digest\r\n.example.org"),
    ],
)
def test_hostile_structured_values_are_refused(field: str, value: str) -> None:
    with pytest.raises(DigestError):
        build(None, **{field: value})


def test_a_comma_in_the_unsubscribe_url_is_escaped_so_it_stays_one_uri() -> None:
    msg = parse(build(unsubscribe_url="https://digest.example.org/u/a,b"))
    assert msg["List-Unsubscribe"] == "<https://digest.example.org/u/a%2Cb>"


# ---------------------------------------------------------------------------------------------- DKIM


def test_a_dkim_signature_verifies_and_covers_both_list_unsubscribe_headers(
    dkim_key: tuple[Path, bytes],
) -> None:
    key, txt = dkim_key
    signer = DkimSigner.from_file(key, "mail", "example.org")
    raw = build(dkim=signer, unsubscribe_mailto="mailto:u@example.org")
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return txt if name == b"mail._domainkey.example.org." else b""

    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns)
    assert asked == [b"mail._domainkey.example.org."]
    signed = parse(raw)["DKIM-Signature"]
    h = re.search(r"\bh=([^;]+)", signed.replace("\r\n", "").replace(" ", ""))
    assert h
    covered = [x.lower() for x in h.group(1).split(":")]
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert name in covered
    assert covered == [x.lower() for x in DKIM_HEADERS]

    # Changing a signed header (here the unsubscribe target) breaks the signature.
    tampered = raw.replace(
        b"List-Unsubscribe: <https://digest.example.org/u/TOKEN>", b"List-Unsubscribe: <https://evil.test/u>"
    )
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_an_unreadable_dkim_key_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match=r"nope\.key: dkim private key: cannot read it"):
        DkimSigner.from_file(missing, "mail", "example.org")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"garbage\.key: dkim: private key: not a PEM RSA private key"):
        DkimSigner.from_file(garbage, "mail", "example.org")


def test_a_bad_dkim_selector_is_a_config_error(dkim_key: tuple[Path, bytes]) -> None:
    with pytest.raises(ConfigError, match="selector"):
        DkimSigner.from_file(dkim_key[0], "mail\r\nX: y", "example.org")
