"""The ways bounces and complaints come in by mail, run inside `digest serve` (DESIGN section 12).

- LMTP (``[bounces] lmtp_listen``): the MTA delivers the bounce address to this listener, as it does for
  Mailman 3. Each recipient gets its own reply after DATA (RFC 2033): 250 once the message is recorded
  in the ``feedback`` table, 451 when the database cannot take it (the MTA keeps it and retries), so a
  bounce is never lost. Addresses other than the bounce address are refused at RCPT.
- IMAP (``[bounces] imap_url_env``): every ``imap_poll_s`` seconds the mailbox is read; a message is
  deleted from it only after it was recorded.

The webhook (the third way) is ``digest.web.webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from digest.config import Config, is_loopback
from digest.errors import ConfigError, DigestError
from digest.feedback import Settings, process_message, settings_for
from digest.store.db import Engine

log = logging.getLogger("digest.inbox")

Clock = Callable[[], datetime]
#: The largest message the LMTP listener takes (a DSN carries the returned digest: ~100 KB).
MAX_MESSAGE = 10 * 1024 * 1024


class FeedbackHandler:
    """aiosmtpd handler: each message to the bounce address goes through ``feedback.process_message``."""

    def __init__(self, engine: Engine, settings: Settings, clock: Clock, *, source: str = "lmtp") -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.source = source

    def accepts(self, address: str) -> bool:
        """Only the bounce address and its VERP forms (any address when none is configured)."""
        if not self.settings.bounce_address:
            return True
        base_local, _, base_domain = self.settings.bounce_address.lower().rpartition("@")
        local, _, domain = address.lower().rpartition("@")
        return domain == base_domain and (local == base_local or local.startswith(base_local + "+"))

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.accepts(address):
            return "550 5.1.1 this listener only takes the bounce address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        replies = []
        for rcpt in envelope.rcpt_tos:  # LMTP: one reply per recipient, each recorded on its own
            try:
                await asyncio.to_thread(
                    process_message,
                    self.engine,
                    self.settings,
                    raw,
                    source=self.source,
                    now=self.clock(),
                    envelope_to=(rcpt,),
                )
                replies.append("250 2.0.0 recorded")
            except Exception:
                log.exception("could not record a bounce for %s; the MTA will retry", rcpt)
                replies.append("451 4.3.0 cannot record it now, try again later")
        return "\r\n".join(replies)


async def start_lmtp(handler: FeedbackHandler, host: str, port: int) -> asyncio.Server:
    """Listen for LMTP on ``host:port`` in the running loop; DigestError when the address is taken."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(
            lambda: LMTP(handler, hostname="digest-bounces", data_size_limit=MAX_MESSAGE), host, port
        )
    except OSError as exc:
        raise DigestError(
            f"bounces.lmtp_listen: cannot listen on {host}:{port} ({exc.strerror}); change it or stop the other process"
        ) from None


@dataclass(frozen=True)
class ImapAccount:
    """A parsed bounce mailbox URL: ``imaps://user:password@host[:port][/folder]``."""

    security: str  # tls | starttls | none
    host: str
    port: int
    username: str
    password: str
    folder: str


def parse_imap_url(url: str, default_folder: str = "INBOX") -> ImapAccount:
    """ConfigError (without the password) when the URL is not usable."""
    parts = urlsplit(url)
    schemes = {"imaps": ("tls", 993), "imap": ("starttls", 143), "imap+plain": ("none", 143)}
    where = "bounces.imap_url_env"
    if parts.scheme not in schemes or not parts.hostname or parts.username is None:
        raise ConfigError(
            [
                f"{where}: expected imaps://user:password@host/folder (or imap:// with STARTTLS), got scheme {parts.scheme!r}"
            ]
        )
    security, port = schemes[parts.scheme]
    if security == "none" and not is_loopback(parts.hostname):
        raise ConfigError([f"{where}: imap+plain:// sends the password in clear: only to a loopback host"])
    folder = unquote(parts.path.lstrip("/")) or default_folder
    return ImapAccount(
        security,
        parts.hostname,
        parts.port or port,
        unquote(parts.username),
        unquote(parts.password or ""),
        folder,
    )


def poll_imap_once(account: ImapAccount, engine: Engine, settings: Settings, clock: Clock) -> int:
    """Record every message of the folder, deleting each one only once it is recorded; how many."""
    from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage

    class RawMessage(MailMessage):
        """imap-tools keeps only the parsed message; the feedback table wants the bytes as received."""

        def __init__(self, fetch_data: list[Any]) -> None:
            super().__init__(fetch_data)
            self.raw: bytes = self._get_message_data_parts(fetch_data)[0]

    box: Any
    if account.security == "tls":
        box = MailBox(account.host, account.port, ssl_context=ssl.create_default_context())
    elif account.security == "starttls":
        box = MailBoxStartTls(account.host, account.port, ssl_context=ssl.create_default_context())
    else:
        box = MailBoxUnencrypted(account.host, account.port)
    box.email_message_class = RawMessage
    count = 0
    with box.login(account.username, account.password, initial_folder=account.folder) as mailbox:
        for message in mailbox.fetch(mark_seen=False, bulk=False):
            process_message(engine, settings, message.raw, source="imap", now=clock())
            mailbox.delete(message.uid)
            count += 1
    return count


class Receivers:
    """The LMTP listener and the IMAP poller of one `serve` process; ``aclose`` stops both."""

    def __init__(self) -> None:
        self.lmtp: asyncio.Server | None = None
        self.poller: asyncio.Task[None] | None = None

    @property
    def lmtp_port(self) -> int | None:
        return int(self.lmtp.sockets[0].getsockname()[1]) if self.lmtp and self.lmtp.sockets else None

    async def aclose(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        if self.lmtp is not None:
            self.lmtp.close()
            await self.lmtp.wait_closed()


async def _poll_forever(
    account: ImapAccount, engine: Engine, settings: Settings, clock: Clock, every_s: float
) -> None:
    while True:
        try:
            n = await asyncio.to_thread(poll_imap_once, account, engine, settings, clock)
            if n:
                log.info("recorded %d message(s) from the bounce mailbox", n)
        except Exception as exc:  # the mailbox is down or refuses us: log it and try again later
            log.error("cannot read the bounce mailbox %s@%s: %s", account.username, account.host, exc)
        await asyncio.sleep(every_s)


async def start_receivers(config: Config, engine: Engine, clock: Clock) -> Receivers:
    """Start what ``[bounces]`` asks for (nothing when it asks for nothing)."""
    receivers = Receivers()
    listen = config.bounces.lmtp_address
    imap_url = config.bounce_imap_url()
    if listen is None and imap_url is None:
        return receivers
    settings = settings_for(config)
    if listen is not None:
        receivers.lmtp = await start_lmtp(FeedbackHandler(engine, settings, clock), *listen)
        log.info(
            "taking bounces over LMTP on %s:%s",
            listen[0],
            receivers.lmtp_port,
            extra={"lmtp_host": listen[0], "lmtp_port": receivers.lmtp_port},
        )
    if imap_url is not None:
        account = parse_imap_url(imap_url, config.bounces.imap_folder)
        receivers.poller = asyncio.ensure_future(
            _poll_forever(account, engine, settings, clock, config.bounces.imap_poll_s)
        )
        log.info(
            "polling the bounce mailbox %s@%s every %.0f s",
            account.username,
            account.host,
            config.bounces.imap_poll_s,
        )
    return receivers
