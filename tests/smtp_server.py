"""A fault-injecting SMTP server on loopback for tests (real aiosmtpd, in a thread).

Use the pytest fixture factory (register it from a conftest with ``from smtp_server import smtp_server``)::

    def test_x(smtp_server):
        server = smtp_server(tls="starttls", auth={"user": "pw"})
        server.script("RCPT", "451 4.3.0 try later")            # the next RCPT, any recipient
        server.script("RCPT", "550 5.1.1 no such user", to="bad@example.org")
        server.script("DATA", DROP)                              # close the connection after DATA, no reply
        settings = server.settings(pool_size=2)                  # SmtpSettings pointing at it (CA file included)
        ...
        server.messages, server.connections, server.commands(), server.drop_connections()

Scripted replies are consumed in order; with none left, the server accepts. ``DROP`` closes the connection
without replying (for DATA: after the whole message arrived, so it counts as received); ``HANG`` never replies.
TLS certificates come from one throwaway trustme CA per test process; ``server.ca_file`` is its PEM.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digest.demo.smtp_sink import SinkHandler, SmtpSink
from digest.mailer import SmtpSettings

DROP = "DROP"
HANG = "HANG"
TlsMode = Literal["starttls", "implicit"]


def received_by(server: SmtpSink) -> dict[str, int]:
    """How many messages each recipient got (a recipient that got none is absent)."""
    counts: dict[str, int] = {}
    for m in server.messages:
        for r in m.recipients:
            counts[r] = counts.get(r, 0) + 1
    return counts


@dataclass(frozen=True)
class Command:
    """One command the server saw: verb, argument, and whether the connection was encrypted."""

    verb: str
    arg: str
    tls: bool


class _Pki:
    """One CA and one server certificate (for 127.0.0.1 and localhost) per test process."""

    _instance: _Pki | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.dir = Path(tempfile.mkdtemp(prefix="digest-test-ca-"))
        atexit.register(shutil.rmtree, self.dir, True)
        self.ca_file = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    @classmethod
    def get(cls) -> _Pki:
        with cls._lock:
            if cls._instance is None:
                cls._instance = _Pki()
            return cls._instance

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        return ctx


class FaultHandler(SinkHandler):
    """SinkHandler that logs commands, counts connections, and answers from a script."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__(folder)
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[str]] = {}
        self._commands: list[Command] = []
        self._sessions: list[SMTP] = []

    # -- script and inspection (called from the test's thread) ------------------------------------

    def script(self, verb: str, *replies: str, to: str = "*") -> None:
        with self._lock:
            self._scripts.setdefault((verb.upper(), to.lower()), deque()).extend(replies)

    def commands(self) -> list[Command]:
        with self._lock:
            return list(self._commands)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sessions)

    def live_sessions(self) -> list[SMTP]:
        with self._lock:
            return [s for s in self._sessions if s.transport is not None]

    # -- hooks (called on the server's thread) ---------------------------------------------------

    def _log(self, session: Session, verb: str, arg: str = "") -> None:
        with self._lock:
            self._commands.append(Command(verb, arg, session.ssl is not None))

    def _next(self, verb: str, recipient: str = "*") -> str | None:
        with self._lock:
            for key in ((verb, recipient.lower()), (verb, "*")):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
        return None

    async def _misbehave(self, server: SMTP, reply: str) -> str:
        if reply == DROP:
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(3600)  # cancelled when aiosmtpd sees the connection go
        if reply == HANG:
            await asyncio.sleep(3600)
        return reply

    def _greeted(self, server: SMTP) -> None:
        with self._lock:
            if not any(s is server for s in self._sessions):
                self._sessions.append(server)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self._greeted(server)
        self._log(session, "EHLO", hostname)
        session.host_name = hostname  # aiosmtpd leaves this to a handler that hooks EHLO
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        self._greeted(server)
        self._log(session, "HELO", hostname)
        session.host_name = hostname
        return f"250 {server.hostname}"

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        self._log(session, "STARTTLS")
        return True

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._log(session, "MAIL", address)
        scripted = self._next("MAIL")
        if scripted is not None and not scripted.startswith("2"):
            return await self._misbehave(server, scripted)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return scripted or "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._log(session, "RCPT", address)
        scripted = self._next("RCPT", address)
        if scripted is not None and not scripted.startswith("2"):
            return await self._misbehave(server, scripted)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return scripted or "250 2.1.5 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._log(session, "RSET")
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._log(session, "DATA")
        recipient = envelope.rcpt_tos[0] if envelope.rcpt_tos else "*"
        scripted = self._next("DATA", recipient)
        if scripted in (DROP, HANG):
            self.record(session, envelope, server)  # the server has the whole message; the client cannot know
            return await self._misbehave(server, scripted)
        if scripted is not None and not scripted.startswith("2"):
            return scripted
        self.record(session, envelope, server)
        return scripted or "250 2.0.0 OK: queued"


class FaultySmtpServer(SmtpSink):
    """An SmtpSink with a FaultHandler, optional STARTTLS / implicit TLS, and optional AUTH."""

    def __init__(
        self,
        *,
        tls: TlsMode | None = None,
        auth: dict[str, str] | None = None,
        auth_require_tls: bool | None = None,
        folder: Path | None = None,
        **smtp_kwargs: Any,
    ) -> None:
        self.tls = tls
        self.fault_handler = FaultHandler(folder)
        pki = _Pki.get() if tls else None
        self.ca_file: str | None = str(pki.ca_file) if pki else None
        ssl_context = pki.server_context() if pki and tls == "implicit" else None
        if pki and tls == "starttls":
            smtp_kwargs["tls_context"] = pki.server_context()
        if auth is not None:
            users = {u.encode(): p.encode() for u, p in auth.items()}

            def authenticator(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                ok = isinstance(data, LoginPassword) and users.get(data.login) == data.password
                self.fault_handler._log(session, "AUTH", mechanism)
                return AuthResult(success=ok, handled=False)

            smtp_kwargs["authenticator"] = authenticator
            # aiosmtpd only offers AUTH after STARTTLS unless told otherwise; implicit TLS is invisible to it.
            smtp_kwargs["auth_require_tls"] = (
                auth_require_tls if auth_require_tls is not None else tls == "starttls"
            )
        super().__init__(folder=folder, handler=self.fault_handler, ssl_context=ssl_context, **smtp_kwargs)

    def script(self, verb: str, *replies: str, to: str = "*") -> None:
        """Queue replies for the next MAIL / RCPT / DATA commands (optionally only for recipient ``to``)."""
        self.fault_handler.script(verb, *replies, to=to)

    def commands(self, verb: str | None = None) -> list[Command]:
        """Every command seen so far (or only ``verb``)."""
        seen = self.fault_handler.commands()
        return [c for c in seen if verb is None or c.verb == verb.upper()]

    @property
    def connections(self) -> int:
        """Connections that got as far as EHLO/HELO."""
        return self.fault_handler.connections

    def drop_connections(self) -> int:
        """Close every open connection from the server side (an idle timeout); returns how many."""
        sessions = self.fault_handler.live_sessions()

        async def close_all() -> None:
            for s in sessions:
                if s.transport is not None:
                    s.transport.close()
            await asyncio.sleep(0.05)  # let the FIN go out before the test carries on

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=5)
        return len(sessions)

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings that reach this server (security to match, the test CA, short timeouts)."""
        security = {"starttls": "starttls", "implicit": "tls", None: "none"}[self.tls]
        base = SmtpSettings(
            host=self.host,
            port=self.port,
            security=security,  # type: ignore[arg-type]
            ca_file=self.ca_file,
            timeout_s=5.0,
            pool_size=2,
            local_hostname="client.localhost",
        )
        return replace(base, **overrides)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., FaultySmtpServer]]:
    """Factory: ``smtp_server(tls=..., auth=...)`` starts a FaultySmtpServer, stopped after the test."""
    started: list[FaultySmtpServer] = []

    def make(**options: Any) -> FaultySmtpServer:
        server = FaultySmtpServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
