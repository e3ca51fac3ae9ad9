"""DKIM through OpenSSL: every signature we make is verified by dkimpy (an independent implementation).

RSA-SHA256 alone, Ed25519-SHA256 beside it (RFC 8463), both covering the List-Unsubscribe headers; our
relaxed canonicalisation agrees with dkimpy's on arbitrary input; bad keys are config errors.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from dkim import dknewkey
from dkim.canonicalization import Relaxed
from dkim_keys import rsa_key_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config_load import parse_config
from digest.dkim import DKIM_HEADERS, DkimSigner, relaxed_body, relaxed_header
from digest.errors import ConfigError
from digest.message import Envelope, build_message
from digest.models import RenderedEmail

WHEN = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)
DOMAIN = "example.org"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | bytes]:
    """RSA and Ed25519 keys made with dkimpy's own generator, and the DNS TXT records it publishes."""
    folder = tmp_path_factory.mktemp("dkim")
    rsa_key, rsa_txt = rsa_key_pair(folder, "rsa")
    ed_key, ed_dns = folder / "ed.key", folder / "ed.dns"
    private = dknewkey.GenEd25519Keys(str(ed_key), verbose=False)
    dknewkey.ExtractEd25519PublicKey(str(ed_dns), private, verbose=False)
    return {"rsa": rsa_key, "rsa_txt": rsa_txt, "ed": ed_key, "ed_txt": ed_dns.read_bytes()}


def dns_for(keys: dict[str, Path | bytes]) -> Callable[..., bytes]:
    records = {
        b"mail._domainkey.example.org.": keys["rsa_txt"],
        b"ed._domainkey.example.org.": keys["ed_txt"],
    }

    def dns(name: bytes, timeout: int = 5) -> bytes:
        value = records.get(name, b"")
        assert isinstance(value, bytes)
        return value

    return dns


def message(signer: DkimSigner | None, **kw: str) -> bytes:
    rendered = RenderedEmail(
        subject=kw.get("subject", 'Paper digest — 3 new papers for "agent*" (Fri 21 Aug)'),
        text=kw.get("text", "Three papers.\n\nUnsubscribe: https://digest.example.org/u/TOKEN\n"),
        html=kw.get("html", "<p>Three   papers.\t</p>\n<p>bye</p>  \n\n\n"),
    )
    return build_message(
        rendered,
        Envelope(
            sender=kw.get("sender", "Paper Digest <digest@example.org>"),
            recipient="ada@example.org",
            list_id="paper-digest.example.org",
            unsubscribe_url="https://digest.example.org/u/TOKEN",
            unsubscribe_mailto="mailto:unsubscribe@example.org",
            date=WHEN,
        ),
        dkim=signer,
    )


def verified(raw: bytes, dns: Callable[..., bytes]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of ``raw``, top to bottom."""
    count = len(re.findall(rb"(?m)^DKIM-Signature:", raw))
    d = dkim.DKIM(raw)
    return [_verify(d, i, dns) for i in range(count)]


def _verify(d: dkim.DKIM, idx: int, dns: Callable[..., bytes]) -> bool:
    try:
        return bool(d.verify(idx=idx, dnsfunc=dns))
    except dkim.DKIMException:  # e.g. "body hash mismatch": a failed verification
        return False


def tags(raw: bytes) -> list[dict[str, str]]:
    out = []
    for header in re.findall(rb"(?ms)^DKIM-Signature: (.*?)\r\n(?=\S)", raw):
        flat = re.sub(rb"\s+", b"", header).decode()
        out.append(dict(part.split("=", 1) for part in flat.split(";") if part))
    return out


def signer(keys: dict[str, Path | bytes], *, ed25519: bool = False) -> DkimSigner:
    rsa_path = keys["rsa"]
    ed_path = keys["ed"]
    assert isinstance(rsa_path, Path) and isinstance(ed_path, Path)
    if not ed25519:
        return DkimSigner.from_file(rsa_path, "mail", DOMAIN)
    return DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=ed_path, ed25519_selector="ed")


def test_an_rsa_signature_verifies_with_dkimpy_and_covers_both_list_unsubscribe_headers(
    keys: dict[str, Path | bytes],
) -> None:
    raw = message(signer(keys))
    assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verified(raw, dns_for(keys)) == [True]
    (t,) = tags(raw)
    assert t["d"] == DOMAIN and t["s"] == "mail"
    covered = t["h"].split(":")
    assert covered == [h.lower() for h in DKIM_HEADERS]
    assert "list-unsubscribe" in covered and "list-unsubscribe-post" in covered


def test_rsa_and_ed25519_signatures_are_both_made_and_both_verify(keys: dict[str, Path | bytes]) -> None:
    s = signer(keys, ed25519=True)
    assert s.algorithms == ("rsa-sha256", "ed25519-sha256")
    raw = message(s)
    assert [t["a"] for t in tags(raw)] == ["rsa-sha256", "ed25519-sha256"]
    assert [t["s"] for t in tags(raw)] == ["mail", "ed"]
    assert verified(raw, dns_for(keys)) == [True, True]


def test_a_changed_signed_header_breaks_every_signature(keys: dict[str, Path | bytes]) -> None:
    raw = message(signer(keys, ed25519=True))
    for old, new in (
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nothing"),
        (b"<https://digest.example.org/u/TOKEN>", b"<https://evil.test/u/TOKEN>"),
        (b"To: ada@example.org", b"To: eve@example.org"),
    ):
        tampered = raw.replace(old, new)
        assert tampered != raw
        assert verified(tampered, dns_for(keys)) == [False, False], old


def test_a_changed_body_breaks_every_signature(keys: dict[str, Path | bytes]) -> None:
    raw = message(signer(keys, ed25519=True))
    head, body = raw.split(b"\r\n\r\n", 1)
    line = body.split(b"\r\n")[4]
    tampered = head + b"\r\n\r\n" + body.replace(line, line[::-1], 1)
    assert verified(tampered, dns_for(keys)) == [False, False]


def test_a_pem_ed25519_key_signs_like_the_dknewkey_seed(
    tmp_path: Path, keys: dict[str, Path | bytes]
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "ed.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    rsa_path = keys["rsa"]
    assert isinstance(rsa_path, Path)
    s = DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=pem, ed25519_selector="ed")
    records = dict(keys, ed_txt=b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public))
    assert verified(message(s), dns_for(records)) == [True, True]


@settings(max_examples=40, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=200),
    name=st.text(max_size=60),
    text=st.text(max_size=400),
    html=st.text(max_size=400),
)
def test_any_built_message_verifies(
    keys: dict[str, Path | bytes], subject: str, name: str, text: str, html: str
) -> None:
    sender = (
        f"{name} <digest@example.org>"
        if name.strip() and "<" not in name and "@" not in name
        else "d@example.org"
    )
    try:
        raw = message(signer(keys, ed25519=True), subject=subject, text=text, html=html, sender=sender)
    except Exception as exc:  # a display name the header rules refuse is not a signing case
        assume_refused(exc)
        return
    assert verified(raw, dns_for(keys)) == [True, True]


def assume_refused(exc: Exception) -> None:
    from digest.errors import DigestError

    assert isinstance(exc, DigestError), exc


WSP_BYTES = st.lists(
    st.sampled_from([b" ", b"\t", b"\r\n", b"a", b"b", b"  ", b"\t \r\n", b"x y"]), max_size=60
).map(b"".join)


@given(WSP_BYTES)
def test_relaxed_body_agrees_with_dkimpy(body: bytes) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(WSP_BYTES)
def test_relaxed_body_agrees_with_dkimpy_past_the_one_by_one_limit(chunk: bytes) -> None:
    body = b"word " * 80 + chunk  # more spaces than are checked one by one
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(st.sampled_from([b"Subject", b"SUBJECT ", b"List-Id"]), WSP_BYTES)
def test_relaxed_header_agrees_with_dkimpy(name: bytes, value: bytes) -> None:
    ((n, v),) = Relaxed.canonicalize_headers([(name, value)])
    assert relaxed_header(name, value) == n + b":" + v


def test_bad_keys_and_settings_are_config_errors_naming_the_file(
    tmp_path: Path, keys: dict[str, Path | bytes]
) -> None:
    rsa_path, ed_path = keys["rsa"], keys["ed"]
    assert isinstance(rsa_path, Path) and isinstance(ed_path, Path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key at all")
    with pytest.raises(ConfigError, match=r"garbage\.key: dkim: ed25519 private key: not a PEM or base64"):
        DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=garbage, ed25519_selector="ed")
    with pytest.raises(
        ConfigError, match=r"rsa\.key: dkim: ed25519 private key: not a PEM or base64"
    ) as info:
        DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=rsa_path, ed25519_selector="ed")
    assert "rsa.key" in str(info.value)
    with pytest.raises(ConfigError, match=r"ed\.key: dkim: private key: not a PEM RSA private key"):
        DkimSigner.from_file(ed_path, "mail", DOMAIN)
    with pytest.raises(ConfigError, match="own selector"):
        DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=ed_path)
    with pytest.raises(ConfigError, match="ed25519 selector"):
        DkimSigner.from_file(rsa_path, "mail", DOMAIN, ed25519_path=ed_path, ed25519_selector="a b")


def test_the_config_keys_for_ed25519_need_the_rsa_key_and_a_selector(
    tmp_path: Path, keys: dict[str, Path | bytes]
) -> None:
    base = {"security": {"secret_key_env": "UNSET_FOR_TEST"}}
    rsa = {"dkim_key_file": str(keys["rsa"]), "dkim_selector": "mail", "dkim_domain": DOMAIN}
    with pytest.raises(ConfigError, match="Ed25519 DKIM signature needs"):
        parse_config({**base, "digest": {"dkim_ed25519_key_file": str(keys["ed"])}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="Ed25519 DKIM signature needs"):
        parse_config(
            {**base, "digest": {**rsa, "dkim_ed25519_key_file": str(keys["ed"])}}, tmp_path / "c.toml"
        )
    config = parse_config(
        {**base, "digest": {**rsa, "dkim_ed25519_key_file": str(keys["ed"]), "dkim_ed25519_selector": "ed"}},
        tmp_path / "c.toml",
    )
    s = DkimSigner.from_config(config)
    assert s is not None and s.algorithms == ("rsa-sha256", "ed25519-sha256")
    assert DkimSigner.from_config(parse_config(base, tmp_path / "c.toml")) is None
