"""``SmtpPool``: ``pool_size`` aiosmtplib connections shared by any number of concurrent ``send`` calls."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

import aiosmtplib
from aiosmtplib import SMTPException, SMTPResponseException, SMTPServerDisconnected, SMTPTimeoutError

from digest.config import is_loopback
from digest.errors import DeliveryError
from digest.mailer.connect import ConnectFailed, Connector
from digest.mailer.outcome import SendOutcome, SmtpSettings, bad_address, classify
from digest.message import WireMessage

_SERVICE_CLOSING = 421
# After a failed connect, sends that need a new connection fail fast for this long instead of each
# waiting out its own connect timeout while the server is down.
_CONNECT_BACKOFF_S = 5.0


class _Dropped(Exception):
    """The connection failed before the end of DATA: the message was certainly not accepted."""

    def __init__(self, reply: str, code: int | None = None) -> None:
        self.reply = reply
        self.code = code
        super().__init__(reply)


class _Slot:
    """One of the pool's connections; None until first used or after it was dropped."""

    __slots__ = ("smtp",)

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None


def prepare_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled (RFC 5321 4.5.2), the final CRLF.CRLF."""
    if type(message) is WireMessage:
        # build_message's output is clean by construction: the scans below cost 0.3 ms on a 130 KB digest.
        return message + b".\r\n" if message.endswith(b"\r\n") else message + b"\r\n.\r\n"
    body = message
    if b"\r" in body or b"\n" in body:
        # Only bytes.replace (C): bare CR and bare LF become CRLF without touching the CRLF pairs.
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b".") or b"\n." in body:
        body = body.replace(b"\n.", b"\n..")
        if body.startswith(b"."):
            body = b"." + body
    return body + b".\r\n"


class SmtpPool:
    """A pool of ``pool_size`` SMTP connections shared by concurrent ``send`` calls.

    Use as ``async with SmtpPool(settings) as pool: outcome = await pool.send(sender, rcpt, data)``.
    Entering opens the first connection, so an unreachable or misconfigured server fails at once with a
    DeliveryError; the other connections open when concurrent sends need them.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.security not in ("starttls", "tls", "none"):
            raise DeliveryError(f"smtp.security must be starttls, tls or none, not {settings.security!r}")
        if settings.security == "none" and not is_loopback(settings.host):
            raise DeliveryError(
                f"smtp.security = 'none' would send mail in clear to {settings.host!r}; "
                "it is allowed only to a loopback host (use 'starttls' or 'tls')"
            )
        if settings.pool_size < 1:
            raise DeliveryError(f"smtp.pool_size must be at least 1, not {settings.pool_size}")
        self.settings = settings
        self.messages_sent = 0
        self._connector = Connector(settings)
        self._slots: asyncio.Queue[_Slot] | None = None
        self._all_slots: list[_Slot] = []
        self._next_send_at = 0.0
        self._down_until = 0.0
        self._down_reply = ""
        self._closed = False

    @property
    def connections_opened(self) -> int:
        """How many connections the pool has opened so far."""
        return self._connector.connections_opened

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        # LIFO: the connection used last is handed out next, so light traffic keeps reusing one warm
        # connection and the others only open when concurrent senders need them.
        self._slots = asyncio.LifoQueue()
        self._all_slots = [_Slot() for _ in range(self.settings.pool_size)]
        for slot in reversed(self._all_slots):
            self._slots.put_nowait(slot)
        first = self._all_slots[0]
        try:
            first.smtp = await self._connect_or_raise()
        except BaseException:
            self._closed = True
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """QUIT every open connection (politely, with a short timeout) and close the pool."""
        self._closed = True
        await asyncio.gather(*(self._quit(slot) for slot in self._all_slots), return_exceptions=True)

    async def _quit(self, slot: _Slot) -> None:
        smtp, slot.smtp = slot.smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit(timeout=min(self.settings.timeout_s, 5.0))
        except (SMTPException, OSError):
            pass  # The server went away first: nothing left to say goodbye to.
        finally:
            smtp.close()

    async def check(self) -> None:
        """Connect once (TLS and AUTH included) and disconnect; DeliveryError says what is wrong."""
        smtp = await self._connect_or_raise()
        try:
            await smtp.noop()
            await smtp.quit()
        except (SMTPException, OSError):
            pass  # We got through TLS and AUTH: that is what the check is for.
        finally:
            smtp.close()

    # -- sending -------------------------------------------------------------------------------

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Send ``message`` (complete RFC 5322 bytes) from ``sender`` to ``recipient``.

        Never raises for a per-recipient problem: the outcome says sent / temporary / permanent / uncertain.
        A connection that drops before the end of DATA is replaced and the message tried once more.
        Raises DeliveryError for whole-run problems (TLS, AUTH, sender refused), always before DATA.
        """
        if self._slots is None or self._closed:
            raise RuntimeError("SmtpPool.send() outside 'async with SmtpPool(...)'")
        bad = bad_address(sender, "sender") or bad_address(recipient, "recipient")
        if bad is not None:
            return bad
        await self._throttle()
        slot = await self._slots.get()
        try:
            payload = prepare_data(message)
            for attempt in (1, 2):
                try:
                    smtp = await self._ensure_connected(slot)
                except ConnectFailed as exc:
                    return SendOutcome("temporary", None, str(exc))
                try:
                    return await self._transact(slot, smtp, sender, recipient, payload)
                except _Dropped as exc:
                    self._discard(slot)
                    if attempt == 2:
                        return SendOutcome("temporary", exc.code, exc.reply)
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            # Cancelled or failed mid-conversation: the connection is in an unknown state.
            self._discard(slot)
            raise
        finally:
            self._slots.put_nowait(slot)

    async def _transact(
        self, slot: _Slot, smtp: aiosmtplib.SMTP, sender: str, recipient: str, payload: bytes
    ) -> SendOutcome:
        utf8 = not (sender.isascii() and recipient.isascii())
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(payload) - 3}")
        if utf8:
            if not smtp.supports_extension("smtputf8"):
                return SendOutcome(
                    "permanent", None, "the address is not ASCII and the server does not offer SMTPUTF8"
                )
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        timeout = self.settings.timeout_s
        try:
            reply = await smtp.execute_command(
                b"MAIL", b"FROM:" + _angle(sender).encode(encoding), *(o.encode() for o in options)
            )
            if reply.code != 250:
                return await self._refused(slot, smtp, reply.code, reply.message, sender=sender)
            reply = await smtp.execute_command(b"RCPT", b"TO:" + _angle(recipient).encode(encoding))
            if reply.code not in (250, 251):
                return await self._refused(slot, smtp, reply.code, reply.message)
            reply = await smtp.execute_command(b"DATA")
            if reply.code != 354:
                return await self._refused(slot, smtp, reply.code, reply.message)
            protocol = smtp.protocol
            if protocol is None:
                raise _Dropped("connection lost before the message was sent")
            protocol.write(payload)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            raise _Dropped(
                f"connection to {self.settings.address} lost before the end of DATA: {exc}"
            ) from None
        # From here on the server has (or may have) the whole message: never treat a loss as "not sent".
        try:
            reply = await protocol.read_response(timeout=timeout)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            smtp.close()
            self._discard(slot)
            return SendOutcome(
                "uncertain",
                None,
                f"connection to {self.settings.address} lost after the end of DATA, before the reply ({exc});"
                " the message may have been delivered",
            )
        except SMTPResponseException as exc:
            smtp.close()
            self._discard(slot)
            return SendOutcome("uncertain", None, f"unreadable reply after the end of DATA: {exc.message}")
        if reply.code == 250:
            self.messages_sent += 1
            return SendOutcome("sent", reply.code, reply.message)
        return await self._refused(slot, smtp, reply.code, reply.message, after_data=True)

    async def _refused(
        self,
        slot: _Slot,
        smtp: aiosmtplib.SMTP,
        code: int,
        reply: str,
        *,
        sender: str | None = None,
        after_data: bool = False,
    ) -> SendOutcome:
        if code == _SERVICE_CLOSING:
            # 421: the server is closing this connection (too many messages, shutting down). Before the
            # end of DATA that is just a dropped connection; after it, a clear "not accepted".
            smtp.close()
            if not after_data:
                raise _Dropped(reply, code)
            self._discard(slot)
            return SendOutcome("temporary", code, reply)
        outcome = classify(code, reply)
        if sender is not None and outcome.status == "permanent":
            raise DeliveryError(
                f"smtp server {self.settings.address} refused the sender {sender!r}: {code} {reply} "
                "(check smtp.from and the relay's sender policy)",
                permanent=True,
                code=code,
            )
        if not after_data:
            await self._reset(slot, smtp)
        return outcome

    async def _reset(self, slot: _Slot, smtp: aiosmtplib.SMTP) -> None:
        """RSET after a refused envelope so the connection is clean for the next message."""
        try:
            reply = await smtp.execute_command(b"RSET")
        except (SMTPException, OSError):
            self._discard(slot)
            return
        if reply.code != 250:
            self._discard(slot)

    async def _throttle(self) -> None:
        """Space messages by 1/rate_per_s across the whole pool (a token bucket holding one token)."""
        rate = self.settings.rate_per_s
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self._next_send_at)
        self._next_send_at = at + 1.0 / rate
        if at > now:
            await asyncio.sleep(at - now)

    # -- connections ---------------------------------------------------------------------------

    def _discard(self, slot: _Slot) -> None:
        smtp, slot.smtp = slot.smtp, None
        if smtp is not None:
            smtp.close()

    async def _ensure_connected(self, slot: _Slot) -> aiosmtplib.SMTP:
        smtp = slot.smtp
        if smtp is not None and smtp.is_connected:
            return smtp
        # The server closed an idle connection (or it never opened): open a fresh one.
        self._discard(slot)
        loop = asyncio.get_running_loop()
        if loop.time() < self._down_until:
            raise ConnectFailed(self._down_reply)
        try:
            slot.smtp = await self._connector.connect()
        except ConnectFailed as exc:
            self._down_until = loop.time() + min(_CONNECT_BACKOFF_S, self.settings.timeout_s)
            self._down_reply = str(exc)
            raise
        return slot.smtp

    async def _connect_or_raise(self) -> aiosmtplib.SMTP:
        try:
            return await self._connector.connect()
        except ConnectFailed as exc:
            raise DeliveryError(str(exc)) from None


def _angle(address: str) -> str:
    return f"<{address}>"
