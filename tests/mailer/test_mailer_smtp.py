"""SmtpPool against a real aiosmtpd server on loopback that injects faults (tests/smtp_server.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from smtp_server import DROP, HANG, FaultySmtpServer

from digest.config_load import parse_config
from digest.errors import DeliveryError
from digest.mailer import SendOutcome, SmtpPool, SmtpSettings, prepare_data

Server = Callable[..., FaultySmtpServer]
SENDER = "digest@example.org"


def message(to: str = "reader@example.org", body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: Paper Digest <{SENDER}>\r\nTo: {to}\r\nSubject: test\r\nMessage-ID: <t@example.org>\r\n\r\n{body}"
    ).encode()


async def send_once(server: FaultySmtpServer) -> SendOutcome:
    """One test message to reader@example.org through a fresh pool to ``server``."""
    async with SmtpPool(server.settings()) as pool:
        return await pool.send(SENDER, "reader@example.org", message())


async def test_a_451_is_temporary_and_the_next_attempt_is_delivered(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("RCPT", "451 4.3.0 try again later")
    async with SmtpPool(server.settings()) as pool:
        first = await pool.send(SENDER, "reader@example.org", message())
        second = await pool.send(SENDER, "reader@example.org", message())
    assert (first.status, first.code) == ("temporary", 451)
    assert "try again later" in first.reply
    assert second.status == "sent"
    assert server.count == 1
    # The refused envelope was reset on the same connection before the next message.
    assert [c.verb for c in server.commands() if c.verb in ("RCPT", "RSET", "DATA")] == [
        "RCPT",
        "RSET",
        "RCPT",
        "DATA",
    ]
    assert server.connections == 1


async def test_a_550_is_permanent_and_other_recipients_still_get_mail(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("RCPT", "550 5.1.1 no such user", to="gone@example.org")
    async with SmtpPool(server.settings()) as pool:
        gone = await pool.send(SENDER, "gone@example.org", message("gone@example.org"))
        ok = await pool.send(SENDER, "reader@example.org", message())
    assert (gone.status, gone.code) == ("permanent", 550)
    assert gone.final
    assert ok.status == "sent"
    assert [m.recipients for m in server.messages] == [("reader@example.org",)]


async def test_a_550_after_data_is_permanent(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("DATA", "554 5.7.1 message rejected as spam")
    outcome = await send_once(server)
    assert (outcome.status, outcome.code) == ("permanent", 554)
    assert server.count == 0


@pytest.mark.parametrize("verb", ["RCPT", "DATA"])
async def test_a_552_is_temporary_not_permanent(smtp_server: Server, verb: str) -> None:
    server = smtp_server()
    server.script(verb, "552 5.2.2 mailbox full")
    outcome = await send_once(server)
    assert (outcome.status, outcome.code) == ("temporary", 552)
    assert not outcome.final


async def test_a_drop_after_the_end_of_data_is_uncertain_and_never_resent(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("DATA", DROP)
    async with SmtpPool(server.settings()) as pool:
        outcome = await pool.send(SENDER, "reader@example.org", message())
        after = await pool.send(SENDER, "other@example.org", message("other@example.org"))
    assert outcome.status == "uncertain"
    assert outcome.code is None
    assert "after the end of DATA" in outcome.reply
    # The server did get the message once, and the pool did not send it again on its own.
    assert [m.recipients for m in server.messages] == [("reader@example.org",), ("other@example.org",)]
    assert len(server.commands("DATA")) == 2
    # The pool replaced the dropped connection for the next message.
    assert after.status == "sent"
    assert server.connections == 2


async def test_no_reply_after_the_end_of_data_is_uncertain(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("DATA", HANG)
    async with SmtpPool(server.settings(timeout_s=0.5)) as pool:
        outcome = await pool.send(SENDER, "reader@example.org", message())
    assert outcome.status == "uncertain"
    assert server.count == 1


async def test_a_drop_before_the_end_of_data_is_retried_once_on_a_new_connection(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("RCPT", DROP)
    async with SmtpPool(server.settings()) as pool:
        outcome = await pool.send(SENDER, "reader@example.org", message())
    assert outcome.status == "sent"
    assert server.count == 1
    assert server.connections == 2
    assert pool.connections_opened == 2


async def test_two_drops_before_data_give_a_temporary_outcome(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("RCPT", DROP, DROP)
    outcome = await send_once(server)
    assert outcome.status == "temporary"
    assert server.count == 0


async def test_a_421_before_data_reconnects_and_delivers(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("MAIL", "421 4.7.0 too many messages on this connection")
    outcome = await send_once(server)
    assert outcome.status == "sent"
    assert server.connections == 2


async def test_a_refused_sender_stops_the_run_with_a_delivery_error(smtp_server: Server) -> None:
    server = smtp_server()
    server.script("MAIL", "553 5.7.1 sender not allowed")
    async with SmtpPool(server.settings()) as pool:
        with pytest.raises(DeliveryError, match="refused the sender") as err:
            await pool.send(SENDER, "reader@example.org", message())
    assert err.value.permanent
    assert err.value.code == 553
    assert server.commands("DATA") == []


async def test_starttls_required_refuses_a_server_that_does_not_offer_it(smtp_server: Server) -> None:
    server = smtp_server()  # plain SMTP, no STARTTLS
    settings = replace(server.settings(), security="starttls")
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        async with SmtpPool(settings):
            pass
    # Nothing of a message went over the clear connection.
    assert [c.verb for c in server.commands()] == ["EHLO"]


async def test_starttls_with_the_relays_ca_file_delivers_over_tls(smtp_server: Server) -> None:
    server = smtp_server(tls="starttls")
    outcome = await send_once(server)
    assert outcome.status == "sent"
    assert server.messages[0].tls
    assert all(c.tls for c in server.commands() if c.verb in ("MAIL", "RCPT", "DATA"))
    assert len(server.commands("STARTTLS")) == 1


async def test_starttls_without_the_ca_file_fails_certificate_verification(smtp_server: Server) -> None:
    server = smtp_server(tls="starttls")
    with pytest.raises(DeliveryError, match=r"certificate.*ca_file|ca_file") as err:
        async with SmtpPool(server.settings(ca_file=None)):
            pass
    assert "verify" in str(err.value).lower()
    assert server.commands("MAIL") == []


async def test_implicit_tls_delivers(smtp_server: Server) -> None:
    server = smtp_server(tls="implicit")
    outcome = await send_once(server)
    assert outcome.status == "sent"
    assert server.messages[0].tls


async def test_auth_logs_in_when_a_username_is_set(smtp_server: Server) -> None:
    server = smtp_server(tls="starttls", auth={"digest": "s3cret"})
    async with SmtpPool(server.settings(username="digest", password="s3cret")) as pool:
        outcome = await pool.send(SENDER, "reader@example.org", message())
    assert outcome.status == "sent"
    auth = server.commands("AUTH")
    assert len(auth) == 1
    assert auth[0].tls


async def test_a_wrong_password_is_a_permanent_delivery_error(smtp_server: Server) -> None:
    server = smtp_server(tls="starttls", auth={"digest": "s3cret"})
    with pytest.raises(DeliveryError, match="refused the login") as err:
        async with SmtpPool(server.settings(username="digest", password="wrong")):
            pass
    assert err.value.permanent
    assert server.commands("MAIL") == []


async def test_a_hundred_messages_share_two_connections(smtp_server: Server) -> None:
    server = smtp_server()
    async with SmtpPool(server.settings(pool_size=2)) as pool:
        outcomes = await asyncio.gather(
            *(pool.send(SENDER, f"r{i}@example.org", message(f"r{i}@example.org")) for i in range(100))
        )
    assert {o.status for o in outcomes} == {"sent"}
    assert server.count == 100
    assert server.connections == 2
    assert pool.connections_opened == 2
    assert pool.messages_sent == 100
    assert sorted(m.recipients[0] for m in server.messages) == sorted(f"r{i}@example.org" for i in range(100))


async def test_an_idle_connection_dropped_by_the_server_is_replaced(smtp_server: Server) -> None:
    server = smtp_server()
    async with SmtpPool(server.settings(pool_size=1)) as pool:
        assert (await pool.send(SENDER, "a@example.org", message())).status == "sent"
        assert server.drop_connections() == 1
        assert (await pool.send(SENDER, "b@example.org", message())).status == "sent"
    assert server.count == 2
    assert server.connections == 2


async def test_the_rate_limit_spaces_messages_across_the_pool(smtp_server: Server) -> None:
    server = smtp_server()
    rate, n = 10.0, 12
    async with SmtpPool(server.settings(pool_size=4, rate_per_s=rate)) as pool:
        start = time.monotonic()
        sending = asyncio.gather(*(pool.send(SENDER, f"r{i}@example.org", message()) for i in range(n)))
        await asyncio.sleep(0.45)
        early, observed_after = server.count, time.monotonic() - start
        outcomes = await sending
        elapsed = time.monotonic() - start
    # One message at t=0, then one every 0.1 s: however slow the machine, no more got through by then.
    assert 1 <= early <= int(observed_after * rate) + 1
    assert early < n
    assert {o.status for o in outcomes} == {"sent"}
    assert elapsed >= (n - 1) / rate * 0.95


async def test_security_none_is_refused_for_a_remote_host() -> None:
    with pytest.raises(DeliveryError, match="loopback"):
        SmtpPool(SmtpSettings(host="smtp.example.org", port=25, security="none"))


async def test_an_unreachable_server_fails_at_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError, match=rf"cannot connect to smtp 127\.0\.0\.1:{port}"):
        async with SmtpPool(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=2)):
            pass


async def test_a_server_gone_mid_run_gives_temporary_outcomes_quickly(smtp_server: Server) -> None:
    server = smtp_server()
    async with SmtpPool(server.settings(pool_size=2, timeout_s=1.5)) as pool:
        assert (await pool.send(SENDER, "a@example.org", message())).status == "sent"
        server.stop()
        start = time.monotonic()
        outcomes = await asyncio.gather(
            *(pool.send(SENDER, f"r{i}@example.org", message()) for i in range(20))
        )
    assert {o.status for o in outcomes} == {"temporary"}
    assert time.monotonic() - start < 4


async def test_check_connects_through_tls_and_auth(smtp_server: Server) -> None:
    server = smtp_server(tls="starttls", auth={"digest": "s3cret"})
    pool = SmtpPool(server.settings(username="digest", password="s3cret"))
    await pool.check()
    assert server.connections == 1
    assert len(server.commands("AUTH")) == 1
    with pytest.raises(DeliveryError):
        await SmtpPool(server.settings(username="digest", password="nope")).check()


async def test_an_address_with_line_breaks_is_refused_before_anything_is_sent(smtp_server: Server) -> None:
    server = smtp_server()
    async with SmtpPool(server.settings()) as pool:
        outcome = await pool.send(SENDER, "a@example.org>\r\nRCPT TO:<victim@example.org", message())
    assert outcome.status == "permanent"
    assert server.commands("RCPT") == []


async def test_message_bytes_arrive_unchanged_including_leading_dots(smtp_server: Server) -> None:
    server = smtp_server()
    body = ".starts with a dot\r\n..two dots\r\n.\r\nmiddle\r\n"
    data = message(body=body)
    async with SmtpPool(server.settings()) as pool:
        assert (await pool.send(SENDER, "reader@example.org", data)).status == "sent"
    assert server.messages[0].data == data


async def test_a_non_ascii_address_is_sent_with_smtputf8(smtp_server: Server) -> None:
    server = smtp_server()
    async with SmtpPool(server.settings()) as pool:
        outcome = await pool.send(SENDER, "jürgen@exämple.org", message())
    assert outcome.status == "sent"
    assert server.messages[0].recipients == ("jürgen@exämple.org",)
    assert "SMTPUTF8" in server.messages[0].mail_options


def test_prepare_data_normalises_line_endings_and_stuffs_dots() -> None:
    assert prepare_data(b"a\nb\r.c\r\n.d") == b"a\r\nb\r\n..c\r\n..d\r\n.\r\n"


def test_settings_come_from_the_config_with_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SMTP_PASSWORD", "pw-from-env")
    config = parse_config(
        {
            "smtp": {
                "host": "relay.example.org",
                "port": 465,
                "security": "tls",
                "username": "digest",
                "password_env": "MY_SMTP_PASSWORD",
                "ca_file": "certs/relay-ca.pem",
                "pool_size": 3,
                "rate_per_s": 5,
            }
        },
        tmp_path / "config.toml",
    )
    settings = SmtpSettings.from_config(config)
    assert (settings.host, settings.port, settings.security) == ("relay.example.org", 465, "tls")
    assert (settings.username, settings.password) == ("digest", "pw-from-env")
    assert settings.ca_file == str(tmp_path / "certs" / "relay-ca.pem")
    assert (settings.pool_size, settings.rate_per_s) == (3, 5)
    assert "pw-from-env" not in repr(settings)
