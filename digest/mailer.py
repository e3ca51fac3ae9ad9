"""Handing finished messages to an SMTP server: a pooled sender, and a file transport for dry runs.

``SmtpPool`` keeps ``pool_size`` aiosmtplib connections open and shares them among any number of
concurrent ``send`` calls. Each call answers with a ``SendOutcome`` for its one recipient:

- ``sent``: the server accepted the message (250 after the end of DATA);
- ``temporary``: 4xx, 552 (RFC 5321 section 4.5.3.1.10 says to treat it as temporary), or the connection
  failed before the end of DATA: try again later;
- ``permanent``: 5xx other than 552: do not try again;
- ``uncertain``: the connection dropped (or timed out) after the end of DATA was sent but before the reply.
  The server may have queued the message; RFC 1047 says not to resend blindly.

Problems that concern the whole run rather than one recipient (the server does not offer STARTTLS, the
certificate fails verification, AUTH is refused, the server refuses our sender address, the server cannot
be reached at start) raise ``DeliveryError`` instead. A ``DeliveryError`` from ``send`` always happens
before the DATA command, so that message was certainly not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from digest.config import is_loopback
from digest.errors import DeliveryError
from digest.message import WireMessage

if TYPE_CHECKING:
    from digest.config import Config

Security = Literal["starttls", "tls", "none"]
Status = Literal["sent", "temporary", "permanent", "uncertain"]

# RFC 5321 4.5.3.1.10: 552 on RCPT/DATA was historically "too many recipients"/"storage exceeded" and
# clients are told to treat it as a temporary failure.
_TEMPORARY_5XX = frozenset({552})
_SERVICE_CLOSING = 421
_HEADER_BREAKERS = ("\r", "\n", "\0")
# After a failed connect, sends that need a new connection fail fast for this long instead of each
# waiting out its own connect timeout while the server is down.
_CONNECT_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of one message to one recipient."""

    status: Status
    code: int | None
    reply: str

    @property
    def final(self) -> bool:
        """True when the outcome must not be retried (sent, permanent, or uncertain)."""
        return self.status != "temporary"


def classify(code: int, reply: str) -> SendOutcome:
    """The outcome an SMTP reply code means for the message (2xx sent, 4xx and 552 temporary, 5xx permanent)."""
    if 200 <= code < 300:
        return SendOutcome("sent", code, reply)
    if 500 <= code < 600 and code not in _TEMPORARY_5XX:
        return SendOutcome("permanent", code, reply)
    # 4xx, 552, and anything malformed: the server did not take the message; trying again is safe.
    return SendOutcome("temporary", code, reply)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server (see the [smtp] section of the config)."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    ca_file: str | None = None
    pool_size: int = 4
    rate_per_s: float = 0.0
    local_hostname: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> SmtpSettings:
        """Settings from the validated config; the password comes from the environment (config.smtp_password())."""
        smtp = config.smtp
        return cls(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=config.smtp_password(),
            timeout_s=smtp.timeout_s,
            ca_file=str(config.resolve(smtp.ca_file)) if smtp.ca_file else None,
            pool_size=smtp.pool_size,
            rate_per_s=smtp.rate_per_s,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Transport(Protocol):
    """Anything that can take a message for one recipient: SmtpPool, FileTransport."""

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Hand over one message; never raises for a per-recipient problem."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _Dropped(Exception):
    """The connection failed before the end of DATA: the message was certainly not accepted."""

    def __init__(self, reply: str, code: int | None = None) -> None:
        self.reply = reply
        self.code = code
        super().__init__(reply)


class _ConnectFailed(Exception):
    """A new connection could not be made (network, timeout, greeting refused)."""


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
        self.connections_opened = 0
        self.messages_sent = 0
        self._tls_context: ssl.SSLContext | None = None
        self._slots: asyncio.Queue[_Slot] | None = None
        self._all_slots: list[_Slot] = []
        self._next_send_at = 0.0
        self._down_until = 0.0
        self._down_reply = ""
        self._local_hostname = settings.local_hostname
        self._closed = False

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
        bad = _bad_address(sender, "sender") or _bad_address(recipient, "recipient")
        if bad is not None:
            return bad
        await self._throttle()
        slot = await self._slots.get()
        try:
            payload = prepare_data(message)
            for attempt in (1, 2):
                try:
                    smtp = await self._ensure_connected(slot)
                except _ConnectFailed as exc:
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
            raise _ConnectFailed(self._down_reply)
        try:
            slot.smtp = await self._connect()
        except _ConnectFailed as exc:
            self._down_until = loop.time() + min(_CONNECT_BACKOFF_S, self.settings.timeout_s)
            self._down_reply = str(exc)
            raise
        return slot.smtp

    async def _connect_or_raise(self) -> aiosmtplib.SMTP:
        try:
            return await self._connect()
        except _ConnectFailed as exc:
            raise DeliveryError(str(exc)) from None

    async def _connect(self) -> aiosmtplib.SMTP:
        """A connected, secured and authenticated connection, or _ConnectFailed / DeliveryError."""
        s = self.settings
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        secure = s.security != "none"
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            local_hostname=self._local_hostname,
            timeout=s.timeout_s,
            use_tls=s.security == "tls",
            start_tls=False,
            tls_context=self._get_tls_context() if secure else None,
        )
        try:
            try:
                await smtp.connect()
            except ssl.SSLError as exc:
                raise self._tls_failed(exc) from None
            except (SMTPConnectError, SMTPTimeoutError, SMTPServerDisconnected, OSError) as exc:
                raise _ConnectFailed(f"cannot connect to smtp {s.address}: {exc}") from None
            except SMTPResponseException as exc:
                raise _ConnectFailed(
                    f"cannot connect to smtp {s.address}: greeting {exc.code} {exc.message}"
                ) from None
            self.connections_opened += 1
            try:
                await smtp.ehlo()
                if s.security == "starttls":
                    if not smtp.supports_extension("starttls"):
                        raise DeliveryError(
                            f"smtp server {s.address} does not offer STARTTLS, and security = 'starttls' never "
                            "sends in clear (use security = 'tls' for an implicit-TLS port like 465, or fix the relay)"
                        )
                    try:
                        await smtp.starttls()
                    except ssl.SSLError as exc:
                        raise self._tls_failed(exc) from None
                    await smtp.ehlo()
                if s.username:
                    await self._login(smtp)
            except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
                raise _ConnectFailed(f"cannot connect to smtp {s.address}: {exc}") from None
            except SMTPResponseException as exc:
                raise _ConnectFailed(
                    f"cannot connect to smtp {s.address}: {exc.code} {exc.message}"
                ) from None
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        s = self.settings
        assert s.username is not None
        if not smtp.supports_extension("auth"):
            raise DeliveryError(
                f"smtp server {s.address} does not offer AUTH but smtp.username is set "
                "(remove the username, or check the port and security setting)"
            )
        try:
            await smtp.login(s.username, s.password or "")
        except SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"smtp server {s.address} refused the login for {s.username!r}: {exc.code} {exc.message} "
                "(check smtp.username and the password named by smtp.password_env)",
                permanent=True,
                code=exc.code,
            ) from None
        except SMTPException as exc:
            if isinstance(exc, SMTPServerDisconnected | SMTPTimeoutError):
                raise
            raise DeliveryError(f"smtp server {s.address}: AUTH failed: {exc}", permanent=True) from None

    def _tls_failed(self, exc: ssl.SSLError) -> DeliveryError:
        s = self.settings
        hint = (
            f"is smtp.ca_file ({s.ca_file}) the CA that signed the relay's certificate?"
            if s.ca_file
            else "for a private relay, set smtp.ca_file to the CA that signed its certificate"
        )
        return DeliveryError(f"TLS with smtp server {s.address} failed: {exc} ({hint})", permanent=True)

    def _get_tls_context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            ca_file = self.settings.ca_file
            try:
                # Certificates are always verified; a private CA is added, never a way to skip checks.
                self._tls_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"cannot read smtp.ca_file {ca_file}: {exc}") from None
        return self._tls_context


def _angle(address: str) -> str:
    return f"<{address}>"


def _bad_address(address: str, role: str) -> SendOutcome | None:
    """An address that could inject SMTP commands is refused before anything is sent."""
    if not address or any(c in address for c in _HEADER_BREAKERS) or any(c in address for c in "<> \t"):
        return SendOutcome("permanent", None, f"invalid {role} address {address!r}")
    if role == "recipient" and "@" not in address:
        return SendOutcome("permanent", None, f"invalid recipient address {address!r}")
    return None


async def send_with_retry(
    transport: Transport,
    sender: str,
    recipient: str,
    message: bytes,
    *,
    attempts: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 60.0,
) -> SendOutcome:
    """Send, retrying temporary outcomes up to ``attempts`` times with exponential backoff.

    Sent, permanent and uncertain outcomes are returned at once (an uncertain one is never resent).
    """
    outcome = await transport.send(sender, recipient, message)
    for attempt in range(1, attempts):
        if outcome.final:
            break
        await asyncio.sleep(min(max_backoff_s, backoff_s * 2 ** (attempt - 1)))
        outcome = await transport.send(sender, recipient, message)
    return outcome


# -- files -------------------------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


class FileTransport:
    """Writes each message to a folder instead of sending it (dry runs, ``digest preview``).

    ``layout="flat"``: ``FOLDER/<UTC time>-<counter>-<recipient>.eml``.
    ``layout="maildir"``: written to ``FOLDER/tmp/`` then renamed into ``FOLDER/new/`` (readable by mail clients).
    Files are created exclusively, so two processes never overwrite each other.
    """

    def __init__(self, folder: Path | str, *, layout: Literal["flat", "maildir"] = "flat") -> None:
        self.folder = Path(folder)
        self.layout = layout
        self.paths: list[Path] = []
        self.messages_sent = 0
        self._counter = 0

    async def __aenter__(self) -> Self:
        try:
            if self.layout == "maildir":
                for sub in ("tmp", "new", "cur"):
                    (self.folder / sub).mkdir(parents=True, exist_ok=True)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create the mail folder {self.folder}: {exc.strerror}") from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Write ``message`` to a new file; the outcome is ``sent`` with the file's path as the reply."""
        bad = _bad_address(sender, "sender") or _bad_address(recipient, "recipient")
        if bad is not None:
            return bad
        try:
            path = self._write(recipient, message)
        except OSError as exc:
            return SendOutcome("temporary", None, f"cannot write to {self.folder}: {exc.strerror}")
        self.paths.append(path)
        self.messages_sent += 1
        return SendOutcome("sent", 250, f"written to {path}")

    def _names(self, recipient: str) -> Iterator[str]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        safe = _UNSAFE_NAME.sub("_", recipient)[:64]
        while True:
            self._counter += 1
            yield f"{stamp}-{self._counter:06d}-{os.getpid()}-{safe}.eml"

    def _write(self, recipient: str, message: bytes) -> Path:
        target_dir = self.folder / "new" if self.layout == "maildir" else self.folder
        for name in self._names(recipient):
            target = target_dir / name
            if target.exists():
                continue
            staging = self.folder / "tmp" / name if self.layout == "maildir" else target_dir / f".{name}.tmp"
            try:
                fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(message)
                # Readers (a mail client on new/, a test) never see half a message.
                os.link(staging, target)
            except FileExistsError:
                continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staging)
            return target
        raise AssertionError("unreachable")  # pragma: no cover


def transport_from_config(config: Config, *, folder: Path | None = None) -> SmtpPool | FileTransport:
    """The transport a run uses: a FileTransport into ``folder`` for a dry run, else the SMTP pool."""
    if folder is not None:
        return FileTransport(folder)
    return SmtpPool(SmtpSettings.from_config(config))


__all__ = [
    "FileTransport",
    "SendOutcome",
    "SmtpPool",
    "SmtpSettings",
    "Transport",
    "classify",
    "prepare_data",
    "send_with_retry",
    "transport_from_config",
]
