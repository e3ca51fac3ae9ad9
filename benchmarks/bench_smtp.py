"""SmtpPool.send vs raw aiosmtplib, on the same fast sink in another process (printed, never asserted).

Both sides send the same prebuilt messages (one recipient each) over the same number of reused
connections to the fast counting sink (digest.demo.smtp_sink, run as a child process). Rounds alternate
raw / pool and the best round of each is kept. Prints messages/s of both, the ratio (target >= 0.7)
and our process's CPU per message for the pool.

    python benchmarks/bench_smtp.py [--quick] [--messages N] [--connections C] [--size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiosmtplib

from digest.demo.smtp_sink import SinkProcess
from digest.mailer import SmtpPool, SmtpSettings

SENDER = "digest@example.org"
HOST = "127.0.0.1"


def build_messages(n: int, size: int) -> list[tuple[str, bytes]]:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
    body = line * max(1, size // len(line))
    out = []
    for i in range(n):
        rcpt = f"reader{i:06d}@example.org"
        head = (
            f"From: Paper Digest <{SENDER}>\r\nTo: {rcpt}\r\nSubject: Paper digest {i}\r\n"
            f"Message-ID: <{i}.bench@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
        ).encode()
        out.append((rcpt, head + body))
    return out


async def raw(port: int, connections: int, messages: list[tuple[str, bytes]]) -> tuple[float, float]:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for m in messages:
        queue.put_nowait(m)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, local_hostname="bench.localhost")
        await smtp.connect()
        try:
            while not queue.empty():
                rcpt, data = queue.get_nowait()
                await smtp.sendmail(SENDER, [rcpt], data)
        finally:
            await smtp.quit()

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - t0, time.process_time() - c0


async def pooled(port: int, connections: int, messages: list[tuple[str, bytes]]) -> tuple[float, float]:
    settings = SmtpSettings(
        host=HOST, port=port, security="none", pool_size=connections, local_hostname="bench.localhost"
    )
    t0, c0 = time.perf_counter(), time.process_time()
    async with SmtpPool(settings) as pool:
        # Every message is its own task, as a pipeline hands them over: the pool does the queueing.
        outcomes = await asyncio.gather(*(pool.send(SENDER, rcpt, data) for rcpt, data in messages))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    bad = [o for o in outcomes if o.status != "sent"]
    if bad:
        raise SystemExit(f"{len(bad)} messages not sent, e.g. {bad[0]}")
    if pool.connections_opened != connections:
        raise SystemExit(f"expected {connections} connections, opened {pool.connections_opened}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 2 rounds")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=30_000, help="approximate message size in bytes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = 2_000 if args.quick else args.messages
    rounds = 2 if args.quick else args.rounds
    messages = build_messages(n, args.size)

    best_raw = best_pool = float("inf")
    pool_cpu = float("inf")
    with SinkProcess() as sink:
        expected = 0
        for _ in range(rounds):
            elapsed, _cpu = asyncio.run(raw(sink.port, args.connections, messages))
            best_raw = min(best_raw, elapsed)
            elapsed, cpu = asyncio.run(pooled(sink.port, args.connections, messages))
            best_pool = min(best_pool, elapsed)
            pool_cpu = min(pool_cpu, cpu)
            expected += 2 * n
        received = sink.count()
    if received != expected:
        print(f"the sink counted {received} messages, expected {expected}", file=sys.stderr)
        return 1

    raw_rate, pool_rate = n / best_raw, n / best_pool
    print(f"smtp: {n} messages of ~{len(messages[0][1]) // 1000} kB over {args.connections} connections")
    print(f"  raw aiosmtplib : {raw_rate:8.0f} msg/s")
    print(f"  SmtpPool.send  : {pool_rate:8.0f} msg/s")
    print(f"  ratio          : {pool_rate / raw_rate:8.2f}  (target >= 0.7)")
    print(f"  pool CPU       : {pool_cpu / n * 1000:8.3f} ms/message in this process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
