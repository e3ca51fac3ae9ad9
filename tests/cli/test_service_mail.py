"""Every service mail takes the one path: the CLI's confirmation and the run's admin alert carry the same DKIM
signature as the web form's mails; the confirmation the same List-Unsubscribe (with its mailto), the alert
none (the operator is not a subscriber: a link to the site's root would be a broken one-click target).

Real parts: `digest` in a subprocess, the fault-injecting aiosmtpd server, dkimpy verifying the signature
against the public key of a key pair made for the test.
"""

from __future__ import annotations

import email
import email.policy
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cli_helpers import digest, subscribe_ada
from smtp_server import FaultySmtpServer

from digest.demo.snapshot_server import SnapshotServer

MAILTO = "unsubscribe@example.org"
DAY = date(2026, 8, 21)


@pytest.fixture
def signing(workspace: Path, mailing: FaultySmtpServer, dkim_key: tuple[Path, bytes]) -> tuple[Any, bytes]:
    """The mailing workspace also signs with ``dkim_key``; (server, TXT record)."""
    key, txt = dkim_key
    path = workspace / "config.toml"
    text = path.read_text().replace(
        "[digest]\n",
        f'[digest]\nunsubscribe_mailto = "{MAILTO}"\ndkim_key_file = "{key}"\n'
        'dkim_selector = "mail"\ndkim_domain = "example.org"\n',
        1,
    )
    path.write_text(text)
    return mailing, txt


def assert_signed_and_headed(raw: bytes, txt: bytes, *, list_mail: bool = True) -> EmailMessage:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        return txt if name == b"mail._domainkey.example.org." else b""

    assert raw.startswith(b"DKIM-Signature: "), raw[:200]
    assert dkim.verify(raw, dnsfunc=dns)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Auto-Submitted"] == "auto-generated"
    if not list_mail:  # the operator's mail: nothing to unsubscribe from
        assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
        return msg
    unsubscribe = str(msg["List-Unsubscribe"])
    assert f"<mailto:{MAILTO}>" in unsubscribe and "<https://" in unsubscribe
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return msg


def test_the_confirmation_from_digest_subscribe_is_signed_and_carries_the_mailto_unsubscribe(
    workspace: Path, signing: tuple[Any, bytes]
) -> None:
    server, txt = signing
    result = digest("subscribe", "ada@example.org", "--rule", "agent*", cwd=workspace)
    assert result.returncode == 0, result.stderr
    (mail,) = [m for m in server.messages if "ada@example.org" in m.recipients]
    msg = assert_signed_and_headed(mail.data, txt)
    assert "/confirm/" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_an_admin_alert_is_signed_and_carries_no_list_unsubscribe(
    workspace: Path, hf: SnapshotServer, signing: tuple[Any, bytes]
) -> None:
    server, txt = signing
    # The site changed: every item fails the schema. The run fails and the admin is told.
    hf.add_day(DAY, [{"not": "a paper"}] * 5)
    hf.add_html(DAY, "<html><body>new design</body></html>")
    subscribe_ada(workspace)
    result = digest("run", "--date", DAY.isoformat(), cwd=workspace, timeout=120)
    assert result.returncode == 1
    alerts = [m for m in server.messages if "ops@example.org" in m.recipients]
    assert len(alerts) == 1, result.stderr
    msg = assert_signed_and_headed(alerts[0].data, txt, list_mail=False)
    assert "source problem" in str(msg["Subject"])
