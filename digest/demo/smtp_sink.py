"""Small SMTP servers on loopback that take mail and keep it: for `digest demo`, tests and benchmarks.

- ``SmtpSink``: a real SMTP server (aiosmtpd, in a background thread) on 127.0.0.1 and a free port; it
  keeps every message in ``sink.messages`` and, if given a folder, writes each one there as ``.eml``::

      with SmtpSink(folder=out) as sink:
          ...send to sink.host:sink.port (security = "none": it is loopback)...
          sink.wait_for(3)

- ``serve_fast_sink``: a minimal asyncio SMTP responder that counts and discards, fast enough that it is
  not the bottleneck of a sending benchmark. ``SinkProcess`` runs it in another process.

Run one by hand: ``python -m digest.demo.smtp_sink [--fast] [--port 0] [--out DIR]`` prints ``port N`` on its
first line, then serves until interrupted or until its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

LOOPBACK = "127.0.0.1"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the server received it: the envelope and the raw bytes."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    peer: str = ""
    tls: bool = False
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> EmailMessage:
        """The bytes parsed as an email (modern policy: headers decoded, parts walkable)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


class SinkHandler:
    """aiosmtpd handler that records each accepted message (thread-safe) and optionally writes it out."""

    def __init__(self, folder: Path | None = None, *, keep: bool = True) -> None:
        self.folder = folder
        self.keep = keep
        self.messages: list[ReceivedMessage] = []
        self.count = 0
        self._cond = threading.Condition()

    def record(self, session: Session, envelope: Envelope, server: SMTP | None = None) -> ReceivedMessage:
        """Keep (and write out) the message in ``envelope``; returns it."""
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        peer = session.peer
        msg = ReceivedMessage(
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or ""),
            # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
            tls=session.ssl is not None
            or (
                server is not None
                and server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None
            ),
            mail_options=tuple(envelope.mail_options),
        )
        with self._cond:
            self.count += 1
            n = self.count
            if self.keep:
                self.messages.append(msg)
            self._cond.notify_all()
        if self.folder is not None:
            first = msg.recipients[0] if msg.recipients else "unknown"
            name = f"{n:06d}-{_UNSAFE_NAME.sub('_', first)[:64]}.eml"
            (self.folder / name).write_bytes(data)
        return msg

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record(session, envelope, server)
        return "250 2.0.0 OK: queued"

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` messages arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


class _FreePortController(Controller):
    """aiosmtpd's Controller, bound to port 0: the real port is read back before the readiness probe."""

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 and a free port, in a background thread (see the module doc).

    ``handler`` defaults to a SinkHandler; extra keyword arguments go to aiosmtpd's SMTP class
    (``tls_context``, ``authenticator``, ``auth_require_tls``, ...). ``ssl_context`` makes it implicit TLS.
    """

    def __init__(
        self,
        *,
        folder: Path | str | None = None,
        keep: bool = True,
        handler: SinkHandler | None = None,
        host: str = LOOPBACK,
        ssl_context: Any = None,
        **smtp_kwargs: Any,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.handler = handler if handler is not None else SinkHandler(self.folder, keep=keep)
        if self.folder is not None:
            self.handler.folder = self.folder
        smtp_kwargs.setdefault(
            "server_hostname", "sink.localhost"
        )  # skip aiosmtpd's getfqdn() per connection
        self._controller = _FreePortController(
            self.handler, hostname=host, port=0, ssl_context=ssl_context, **smtp_kwargs
        )
        self.host = host
        self.port = 0
        self._running = False

    def start(self) -> Self:
        """Bind and start serving; ``port`` is known afterwards."""
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        self._running = True
        self.port = int(self._controller.port)
        return self

    def stop(self) -> None:
        """Stop serving (open connections are cut). Stopping twice is harmless."""
        if self._running:
            self._running = False
            self._controller.stop(no_assert=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def count(self) -> int:
        return self.handler.count

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` messages arrived; False on timeout."""
        return self.handler.wait_for(count, timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server thread's event loop (to schedule work on it with call_soon_threadsafe)."""
        return self._controller.loop


# -- the fast sink ----------------------------------------------------------------------------------


@dataclass
class FastSinkStats:
    messages: int = 0
    bytes: int = 0
    connections: int = 0


_EHLO_REPLY = (
    b"250-sink.localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 104857600\r\n"
)
_DATA_END = b"\r\n.\r\n"


class _FastSinkProtocol(asyncio.Protocol):
    """Just enough SMTP to accept mail: every command succeeds; the message body is counted and dropped."""

    def __init__(self, stats: FastSinkStats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.in_data = False
        self.scanned = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.stats.connections += 1
        self.transport.write(b"220 sink.localhost ESMTP fast sink\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = bytearray()
        while self.buffer:
            if self.in_data:
                if self.buffer.startswith(b".\r\n") and self.scanned == 0:
                    end, skip = 0, 3  # an empty message
                else:
                    end = self.buffer.find(_DATA_END, max(0, self.scanned - 4))
                    skip = 5
                    if end < 0:
                        self.scanned = len(self.buffer)
                        break
                self.stats.messages += 1
                self.stats.bytes += end
                del self.buffer[: end + skip]
                self.in_data = False
                self.scanned = 0
                out += b"250 2.0.0 OK\r\n"
                continue
            nl = self.buffer.find(b"\n")
            if nl < 0:
                break
            line = bytes(self.buffer[:nl]).rstrip(b"\r")
            del self.buffer[: nl + 1]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out += _EHLO_REPLY
            elif verb == b"DATA":
                self.in_data = True
                self.scanned = 0
                out += b"354 End data with <CR><LF>.<CR><LF>\r\n"
            elif verb == b"QUIT":
                out += b"221 Bye\r\n"
                assert self.transport is not None
                self.transport.write(bytes(out))
                self.transport.close()
                return
            elif verb == b"XCOU":  # XCOUNT: how many messages so far (for benchmarks to check)
                out += b"250 %d\r\n" % self.stats.messages
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                out += b"250 OK\r\n"
            else:
                out += b"500 5.5.1 unknown command\r\n"
        if out and self.transport is not None:
            self.transport.write(bytes(out))


async def serve_fast_sink(host: str = LOOPBACK, port: int = 0) -> tuple[asyncio.Server, FastSinkStats]:
    """Start the fast counting sink on the running loop; returns the server and its live counters."""
    stats = FastSinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FastSinkProtocol(stats), host, port)
    return server, stats


class SinkProcess:
    """The fast sink (or with ``fast=False`` the aiosmtpd sink) in a child process, for benchmarks.

    ``with SinkProcess() as sink:`` gives ``sink.host`` / ``sink.port``; ``sink.count()`` asks it how many
    messages it has accepted (fast sink only).
    """

    def __init__(self, *, fast: bool = True, out: Path | None = None) -> None:
        self.fast = fast
        self.out = out
        self.host = LOOPBACK
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        args = [sys.executable, "-m", "digest.demo.smtp_sink", "--port", "0"]
        if self.fast:
            args.append("--fast")
        if self.out is not None:
            args += ["--out", str(self.out)]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("port "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the sink process did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child exits when its stdin closes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def count(self) -> int:
        """Messages the fast sink has accepted so far."""
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"XCOUNT\r\n")
            f.flush()
            reply = f.readline()
            f.write(b"QUIT\r\n")
            f.flush()
        return int(reply.split()[1])


# -- command line -----------------------------------------------------------------------------------


def _stdin_closed(stop: threading.Event) -> None:
    with contextlib.suppress(Exception):
        sys.stdin.read()
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m digest.demo.smtp_sink``: serve until interrupted or stdin closes; print ``port N`` first."""
    parser = argparse.ArgumentParser(
        prog="python -m digest.demo.smtp_sink", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="count and discard (for benchmarks)")
    parser.add_argument("--out", type=Path, help="write each message to this folder (aiosmtpd sink)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_stdin_closed, args=(stop,), daemon=True).start()

    if args.fast:
        return asyncio.run(_run_fast(args.host, args.port, stop))
    if args.port != 0:
        parser.error("the aiosmtpd sink always binds a free port: use --port 0")
    with SmtpSink(folder=args.out, keep=False, host=args.host) as sink:
        print(f"port {sink.port}", flush=True)
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        print(f"received {sink.count}", file=sys.stderr, flush=True)
    return 0


async def _run_fast(host: str, port: int, stop: threading.Event) -> int:
    server, stats = await serve_fast_sink(host, port)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        while not stop.is_set():
            await asyncio.sleep(0.1)
    finally:
        server.close()
    print(f"received {stats.messages}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
