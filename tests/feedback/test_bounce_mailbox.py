"""Bounces read from an IMAP mailbox (a private Dovecot) and taken over LMTP (aiosmtpd's LMTP server)."""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from dovecot_imap import DOVECOT, PASSWORD, USER, PrivateDovecot
from feedback_helpers import NOW, SECRET, add_active, add_delivery, sample, settings, status_of, verp
from imap_tools import MailBoxUnencrypted

from digest.config_load import parse_config
from digest.errors import ConfigError
from digest.inbox import FeedbackHandler, parse_imap_url, poll_imap_once, start_lmtp, start_receivers
from digest.store.feedback import count_by_kind, list_feedback, raw_message


@pytest.fixture
def dovecot() -> Iterator[PrivateDovecot]:
    if not os.path.exists(DOVECOT):
        if os.environ.get("CI"):
            pytest.fail("dovecot is missing: scripts/test installs dovecot-imapd")
        pytest.skip("Debian's dovecot-imapd is not installed (scripts/test installs it)")
    with PrivateDovecot() as server:
        yield server


def test_the_mailbox_is_read_recorded_and_emptied(dovecot: PrivateDovecot, engine: sa.Engine) -> None:
    ghost = add_active(engine, "ghost@users.example.net")
    add_active(engine, "ada@users.example.net")
    garbage = b"Subject: not a bounce\r\n\r\nsomeone wrote to the bounce address\r\n"
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(USER, PASSWORD) as box:
        box.append(sample("postfix-3.7-user-unknown.eml", add_delivery(engine, ghost)), "INBOX")
        box.append(sample("arf-abuse-complaint.eml"), "INBOX")
        box.append(garbage, "INBOX")

    count = poll_imap_once(parse_imap_url(dovecot.url), engine, settings(), lambda: NOW)

    assert count == 3
    assert status_of(engine, "ghost@users.example.net") == "bounced"
    assert status_of(engine, "ada@users.example.net") == "unsubscribed"
    assert count_by_kind(engine) == {"hard": 1, "complaint": 1, "unreadable": 1}
    kept = next(f for f in list_feedback(engine) if f.kind == "unreadable")
    assert raw_message(engine, kept.id) == garbage, "the message is kept as it was in the mailbox"
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(USER, PASSWORD) as box:
        assert list(box.uids()) == [], "recorded messages leave the mailbox"
    assert poll_imap_once(parse_imap_url(dovecot.url), engine, settings(), lambda: NOW) == 0


def test_a_wrong_password_is_an_error_and_loses_nothing(dovecot: PrivateDovecot, engine: sa.Engine) -> None:
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(USER, PASSWORD) as box:
        box.append(sample("gmail-address-not-found.eml"), "INBOX")

    with pytest.raises(Exception, match=r"(?i)auth"):
        poll_imap_once(
            parse_imap_url(dovecot.url.replace(PASSWORD, "wrong")), engine, settings(), lambda: NOW
        )

    assert list_feedback(engine) == []
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(USER, PASSWORD) as box:
        assert len(list(box.uids())) == 1


def test_imap_urls_are_checked() -> None:
    account = parse_imap_url("imaps://bounce%40lists.example.org:p%2Fss@imap.example.org/Bounces")
    assert (account.security, account.port, account.username, account.password, account.folder) == (
        "tls",
        993,
        "bounce@lists.example.org",
        "p/ss",
        "Bounces",
    )
    assert parse_imap_url("imap://u:p@imap.example.org").security == "starttls"
    with pytest.raises(ConfigError, match="loopback"):
        parse_imap_url("imap+plain://u:p@imap.example.org/INBOX")
    with pytest.raises(ConfigError, match="imaps://"):
        parse_imap_url("pop3://u:p@mail.example.org")


async def lmtp_send(port: int, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # on the wire, as an MTA sends it

    def send() -> dict[str, tuple[int, bytes]]:
        client = smtplib.LMTP("127.0.0.1", port)
        try:
            return client.sendmail("", rcpts, data)  # type: ignore[return-value]
        finally:
            client.quit()

    return await asyncio.to_thread(send)


async def test_the_lmtp_listener_records_each_bounce_and_refuses_other_addresses(engine: sa.Engine) -> None:
    sid = add_active(engine, "ghost@users.example.net")
    delivery_id = add_delivery(engine, sid)
    server = await start_lmtp(FeedbackHandler(engine, settings(), lambda: NOW), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        refused = await lmtp_send(
            port, [verp(delivery_id), "postmaster@lists.example.org"], sample("exim-4.96-unrouteable.eml")
        )
        assert list(refused) == ["postmaster@lists.example.org"], "only the bounce address is taken"
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await lmtp_send(port, ["someone@elsewhere.example.net"], b"Subject: x\r\n\r\ny\r\n")
    finally:
        server.close()
        await server.wait_closed()

    assert status_of(engine, "ghost@users.example.net") == "bounced"
    [row] = list_feedback(engine)
    assert (row.source, row.kind) == ("lmtp", "hard")


async def test_lmtp_says_try_again_later_when_the_database_cannot_record(tmp_path: Path) -> None:
    broken = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")  # the folder does not exist
    server = await start_lmtp(FeedbackHandler(broken, settings(), lambda: NOW), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(smtplib.SMTPDataError) as err:
            await lmtp_send(port, [verp(1)], sample("gmail-address-not-found.eml"))
        assert err.value.smtp_code == 451, "the MTA keeps the bounce and retries: nothing is lost"
    finally:
        server.close()
        await server.wait_closed()


async def test_serve_polls_the_configured_mailbox(
    dovecot: PrivateDovecot, sqlite_engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    monkeypatch.setenv("BOUNCE_BOX", dovecot.url)
    config = parse_config(
        {"bounces": {"address": "bounces@lists.example.org", "imap_url_env": "BOUNCE_BOX", "imap_poll_s": 5}},
        tmp_path / "config.toml",
    )
    delivery_id = add_delivery(sqlite_engine, add_active(sqlite_engine, "ghost@users.example.net"))
    with MailBoxUnencrypted("127.0.0.1", dovecot.port).login(USER, PASSWORD) as box:
        box.append(sample("exim-4.96-unrouteable.eml", delivery_id), "INBOX")

    receivers = await start_receivers(config, sqlite_engine, lambda: NOW)
    try:
        for _ in range(200):
            if list_feedback(sqlite_engine):
                break
            await asyncio.sleep(0.05)
    finally:
        await receivers.aclose()

    assert [f.source for f in list_feedback(sqlite_engine)] == ["imap"]
    assert status_of(sqlite_engine, "ghost@users.example.net") == "bounced"
