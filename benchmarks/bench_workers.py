"""PostgreSQL with 2 `digest worker` processes vs raw aiosmtplib (printed, never asserted): issue 12 "Speed".

The realistic run of ``bench_realistic``, on the data of ``bench_data`` (8 rule sets, a 120-paper day,
``max_papers = 30``: ~88 KB digests; the aiosmtpd sink in another process), delivered by procrastinate jobs: the plan job and one delivery job
per ``chunk_size`` rows, run by two real worker processes (``pool_size = 2`` each: the same 4 connections
as raw). Timed from deferring the plan job to the run's end. Raw: aiosmtplib sending as many prebuilt
digests over 4 reused connections to the same sink. Printed: msg/s, the ratio, the CPU of both workers
per message, each worker's peak RSS.

    DIGEST_TEST_PG_URL=$(scripts/start-postgres) python benchmarks/bench_workers.py [--quick] [--subscribers N]

Written beside ``bench_realistic`` (another branch), to be folded into it as its "PostgreSQL with 2 workers"
configuration; both take their data, configuration and database from ``bench_data``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import psutil
import sqlalchemy as sa
from bench_data import RULES, config_text, database_copies, day_items

from digest.compose import Composer
from digest.config_load import load_config
from digest.demo.smtp_sink import SinkProcess
from digest.demo.snapshot_server import SnapshotServer
from digest.jobs import PlanDeferrer
from digest.models import Rule, Subscriber
from digest.pipeline import open_store
from digest.rules import select_papers
from digest.store.papers import load_papers
from digest.store.tables import run

DAY = datetime.now(UTC).date()  # the workers' refresh and plan use today's date
CONNECTIONS = 4


def write_config(tmp: Path, db_url: str, hf_url: str, port: int, chunk_size: int) -> Path:
    """bench_data's configuration with the workers on: two of them with 2 connections each (raw's 4)."""
    key = tmp / "secret_key"
    key.write_text(secrets.token_urlsafe(48))
    text = config_text(
        db_url,
        key,
        hf_url=hf_url,
        smtp_port=port,
        schedule={"timezone": "UTC"},  # DAY is today in UTC
        smtp={"pool_size": 2},
        workers={"enabled": True, "chunk_size": chunk_size},
    )
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def run_workers(config_path: Path, tmp: Path) -> dict[str, Any]:
    """Two workers; defer the plan; wait for the end of the run. Wall, CPU and peak RSS of the workers."""
    config = load_config(config_path)
    engine = open_store(config)
    logs = [tmp / f"worker{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config_path), "worker"],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        for log in logs
    ]
    try:
        while not all("worker started" in log.read_text() for log in logs):
            time.sleep(0.1)
        handles = [psutil.Process(p.pid) for p in procs]
        cpu0 = sum(_cpu(h) for h in handles)
        t0 = time.perf_counter()

        async def defer() -> None:
            deferrer = PlanDeferrer(config, engine)
            await deferrer(DAY)
            await deferrer.aclose()

        asyncio.run(defer())
        while True:
            with engine.connect() as conn:
                row = conn.execute(sa.select(run.c.status, run.c.report).where(run.c.run_date == DAY)).first()
            if row is not None and row.status != "running":
                break
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        cpu = sum(_cpu(h) for h in handles) - cpu0
        rss = [_peak_rss_mb(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    report = row.report or {}
    engine.dispose()
    return {"wall": wall, "cpu": cpu, "rss": rss, "sent": int(report.get("sent", 0)), "status": row.status}


def samples(config_path: Path) -> list[bytes]:
    """One real digest per rule set, as our run builds it (what raw sends, prebuilt)."""
    config = load_config(config_path)
    engine = open_store(config)
    papers = load_papers(engine, DAY, DAY)
    composer = Composer.for_config(config)
    out = []
    for i, queries in enumerate(RULES):
        sub = Subscriber(id=i + 1, email=f"reader{i:06d}@example.org", rules=tuple(Rule(q) for q in queries))
        mail = composer.compose(sub, select_papers(papers, sub.rules), DAY, datetime.now(UTC))
        assert mail is not None
        out.append(mail.message)
    engine.dispose()
    return out


async def raw_send(port: int, messages: list[bytes], n: int) -> tuple[float, float]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def connection() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, use_tls=False, start_tls=False)
        await smtp.connect()
        while not queue.empty():
            i = queue.get_nowait()
            await smtp.sendmail(
                "digest@example.org", [f"reader{i:06d}@example.org"], messages[i % len(messages)]
            )
        await smtp.quit()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 subscribers")
    parser.add_argument("--subscribers", type=int, default=int(os.environ.get("BENCH_SUBSCRIBERS", "100000")))
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--sink", choices=("aiosmtpd", "fast"), default="aiosmtpd")
    args, _unknown = parser.parse_known_args()  # scripts/bench passes the same flags to every benchmark
    if not os.environ.get("DIGEST_TEST_PG_URL"):
        print("bench_workers: skipped (set DIGEST_TEST_PG_URL=$(scripts/start-postgres))")
        return 0
    n = 5_000 if args.quick else args.subscribers
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        database_copies("postgres", Path(tmp_name), n, prefix="bench_workers") as copy,
        SnapshotServer() as hf,
        SinkProcess(fast=args.sink == "fast") as sink,
    ):
        tmp = Path(tmp_name)
        hf.add_day(DAY, day_items(DAY))
        config_path = write_config(tmp, copy("run"), hf.base_url, sink.port, args.chunk_size)
        open_store(load_config(config_path)).dispose()  # procrastinate's schema, for the workers
        ours = run_workers(config_path, tmp)
        prebuilt = samples(config_path)
        raw_wall, raw_cpu = asyncio.run(raw_send(sink.port, prebuilt, ours["sent"]))
    sent = max(ours["sent"], 1)
    rate, raw_rate = sent / ours["wall"], sent / raw_wall
    size = sum(len(m) for m in prebuilt) / len(prebuilt) / 1024
    print(
        f"postgres, 2 workers: {ours['sent']} digests of ~{size:.0f} KB ({ours['status']}) in {ours['wall']:.1f} s; "
        f"ours {rate:,.0f} msg/s, raw {raw_rate:,.0f} msg/s, ratio {rate / raw_rate:.2f} (target >= 0.9; "
        f"100k run <= 1.15x raw time); CPU of both workers {ours['cpu'] / sent * 1000:.3f} ms/msg (raw client "
        f"{raw_cpu / sent * 1000:.3f}); peak RSS per worker {', '.join(f'{r:.0f}' for r in ours['rss'])} MB; "
        f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
