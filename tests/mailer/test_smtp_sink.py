"""The loopback SMTP sinks: the aiosmtpd one (demo, tests) and the fast counting one (benchmarks)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiosmtplib

from digest.demo.smtp_sink import SinkProcess, SmtpSink, serve_fast_sink
from digest.mailer import SmtpPool, SmtpSettings

DATA = b"From: digest@example.org\r\nTo: reader@example.org\r\nSubject: hi\r\n\r\n.dot line\r\nbody\r\n"


def settings(port: int, **kw: object) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", local_hostname="client.localhost", **kw)  # type: ignore[arg-type]


async def test_the_sink_keeps_messages_and_writes_them_to_a_folder(tmp_path: Path) -> None:
    with SmtpSink(folder=tmp_path / "mail") as sink:
        async with SmtpPool(settings(sink.port)) as pool:
            await pool.send("digest@example.org", "reader@example.org", DATA)
            await pool.send("digest@example.org", "other@example.org", DATA)
        assert sink.wait_for(2, timeout=5)
    assert [m.recipients for m in sink.messages] == [("reader@example.org",), ("other@example.org",)]
    assert sink.messages[0].data == DATA
    assert sink.messages[0].message["Subject"] == "hi"
    files = sorted((tmp_path / "mail").iterdir())
    assert [f.name for f in files] == ["000001-reader@example.org.eml", "000002-other@example.org.eml"]
    assert files[0].read_bytes() == DATA


async def test_the_fast_sink_counts_messages_including_empty_and_pipelined_ones() -> None:
    server, stats = await serve_fast_sink()
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=False, local_hostname="t"
        ) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], DATA)
            await smtp.sendmail("a@example.org", ["b@example.org"], b"")
            big = b"x" * 100 + b"\r\n"
            await smtp.sendmail("a@example.org", ["b@example.org"], big * 5000)
        # Commands written in one go (PIPELINING) each get their reply.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        await writer.drain()
        replies = [await reader.readline() for _ in range(8)]  # 5 for EHLO, MAIL, RCPT, DATA
        assert replies[-1].startswith(b"354")
        writer.write(b"Subject: x\r\n\r\nhi\r\n.\r\nXCOUNT\r\nQUIT\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"250")
        assert await reader.readline() == b"250 4\r\n"
        writer.close()
    finally:
        server.close()
    assert stats.messages == 4
    assert stats.connections == 2


def test_the_sink_process_serves_on_a_free_port_and_reports_its_count() -> None:
    async def send(port: int) -> None:
        async with SmtpPool(settings(port, pool_size=3)) as pool:
            await asyncio.gather(*(pool.send("a@example.org", f"r{i}@example.org", DATA) for i in range(30)))

    with SinkProcess() as sink:
        assert sink.port > 0
        asyncio.run(send(sink.port))
        assert sink.count() == 30


def test_the_module_runs_as_a_command_and_stops_when_stdin_closes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest.demo.smtp_sink", "--out", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline().split()[1])

    async def send() -> None:
        async with SmtpPool(settings(port)) as pool:
            await pool.send("a@example.org", "reader@example.org", DATA)

    asyncio.run(send())
    proc.stdin.close()
    proc.wait(timeout=10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0
    assert "received 1" in err
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [DATA]
