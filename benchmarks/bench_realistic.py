"""The realistic delivery benchmark (printed, never asserted): DESIGN section 11, issue 12 "Speed".

N subscribers (default 100,000; ``--subscribers N`` or ``$BENCH_SUBSCRIBERS``; ``--quick`` = 10,000) spread
over a mix of 8 different rules, a 120-paper day (the captured HF days plus variants, all served as one day
by the local snapshot server) and ``max_papers = 30``: digests of about 88 KB. The sink is aiosmtpd in
another process (``--sink fast`` for the minimal counting sink). Each measured run is its own child process
(clean CPU and peak-RSS numbers):

- ours: ``run_digest`` (fetch, plan, claim, render, MIME, [DKIM], send over the pool, record);
- raw: aiosmtplib ``sendmail`` of the same number of prebuilt digests over the same 4 connections;
- cpu: ``run_digest`` with a transport that accepts at once: our CPU alone (render + MIME + bookkeeping).

Rounds alternate ours/raw and the best of each is kept (the machine is shared: the best round is the least
disturbed one). Printed: msg/s, the ratio ours/raw, CPU per message, peak RSS; for SQLite, PostgreSQL
inline ($DIGEST_TEST_PG_URL, see scripts/start-postgres) and a DKIM-signed SQLite run.

    python benchmarks/bench_realistic.py [--quick] [--subscribers N] [--rounds R] [--only sqlite,postgres,dkim]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_data import (
    DAY,
    MAX_PAPERS,
    PAPERS,
    RULES,
    config_text,
    database_copies,
    day_items,
    load_config_text,
)

SENDER = "digest@example.org"


# ---------------------------------------------------------------------------------------------- children


def _config(spec: dict[str, Any]) -> Any:
    text = config_text(
        spec["db"], spec["secret"], hf_url=spec["hf"], smtp_port=spec["port"], digest=spec.get("digest", {})
    )
    return load_config_text(text, spec["tmp"])


class _Accept:
    """Accepts every message at once: what is left is our own CPU."""

    async def __aenter__(self) -> _Accept:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, sender: str, recipient: str, message: bytes) -> Any:
        from digest.mailer import SendOutcome

        return SendOutcome("sent", 250, "ok")


def child_ours(spec: dict[str, Any]) -> dict[str, Any]:
    from digest.mailer import SmtpPool, SmtpSettings
    from digest.pipeline import run_digest
    from digest.store import db

    config = _config(spec)
    engine = db.open_database(config.database_url)

    async def go() -> Any:
        transport: Any = _Accept() if spec["mode"] == "cpu" else SmtpPool(SmtpSettings.from_config(config))
        async with transport:
            return await run_digest(config, engine, DAY, transport)

    cpu0, t0 = time.process_time(), time.perf_counter()
    report = asyncio.run(go())
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if spec.get("samples"):
        _write_samples(config, engine, Path(spec["samples"]))
    engine.dispose()
    return {"wall": wall, "cpu": cpu, "sent": report.sent, "status": report.status, "rss_kb": _rss()}


def _write_samples(config: Any, engine: Any, path: Path) -> None:
    """One real digest per rule set (what raw aiosmtplib sends, prebuilt)."""
    from digest.compose import Composer
    from digest.models import Rule, Subscriber
    from digest.rules import BatchMatcher
    from digest.store.papers import load_papers

    papers = load_papers(engine, DAY, DAY)
    matcher = BatchMatcher(sorted(papers, key=lambda p: p.id))
    composer = Composer.for_config(config)
    samples = []
    for i, queries in enumerate(RULES):
        sub = Subscriber(id=i + 1, email=f"reader{i:06d}@example.org", rules=tuple(Rule(q) for q in queries))
        mail = composer.compose(sub, matcher.select(sub.rules), DAY, datetime.now(UTC))
        assert mail is not None, queries
        samples.append(mail.message.hex())
    path.write_text(json.dumps(samples))


def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import aiosmtplib

    samples = [bytes.fromhex(s) for s in json.loads(Path(spec["samples"]).read_text())]
    n = spec["count"]

    async def go() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=spec["port"], use_tls=False, start_tls=False)
            await smtp.connect()
            while not queue.empty():
                i = queue.get_nowait()
                await smtp.sendmail(SENDER, [f"reader{i:06d}@example.org"], samples[i % len(samples)])
            await smtp.quit()

        await asyncio.gather(*(worker() for _ in range(4)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return {
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - cpu0,
        "sent": n,
        "size": sum(len(s) for s in samples) // len(samples),
        "rss_kb": _rss(),
    }


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    if spec.get("code"):  # --baseline: this child imports digest from another checkout
        env["PYTHONPATH"] = spec["code"]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------- main


def dkim_keys(tmp: Path) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    rsa_path, ed_path = tmp / "dkim-rsa.pem", tmp / "dkim-ed25519.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    ed_path.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {"rsa": str(rsa_path), "ed25519": str(ed_path)}


def measure(label: str, kind: str, base: dict[str, Any], fresh: Any, rounds: int) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    raws: list[dict[str, Any]] = []
    samples = str(Path(base["tmp"]) / f"samples-{label}.json")
    cpu = run_child({**base, "mode": "cpu", "db": fresh(f"{label}_cpu")})
    for r in range(rounds):
        spec = {**base, "mode": "smtp", "db": fresh(f"{label}_{r}"), "samples": samples if r == 0 else None}
        # Alternate which goes first, so neither side always meets the same background load.
        order = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
        for side in order:
            if side == "ours":
                ours.append(run_child(spec))
            else:  # round 0 runs ours first: it writes the samples raw sends
                raws.append(run_child({**base, "mode": "raw", "samples": samples, "count": ours[-1]["sent"]}))
    best, best_raw = min(ours, key=lambda x: x["wall"]), min(raws, key=lambda x: x["wall"])
    rate, raw_rate = best["sent"] / best["wall"], best_raw["sent"] / best_raw["wall"]
    result = {
        "label": label,
        "db": kind,
        "sent": best["sent"],
        "size_kb": best_raw["size"] / 1024,
        "ours_msg_s": rate,
        "raw_msg_s": raw_rate,
        "ratio": rate / raw_rate,
        "ours_wall_s": best["wall"],
        "raw_wall_s": best_raw["wall"],
        "cpu_ms_alone": cpu["cpu"] / max(cpu["sent"], 1) * 1000,
        "cpu_ms_with_smtp": min(o["cpu"] for o in ours) / max(best["sent"], 1) * 1000,
        "raw_cpu_ms": min(x["cpu"] for x in raws) / max(best_raw["sent"], 1) * 1000,
        "peak_rss_mb": max(o["rss_kb"] for o in [*ours, cpu]) / 1024,
        "walls": [round(o["wall"], 2) for o in ours],
        "raw_walls": [round(x["wall"], 2) for x in raws],
    }
    print(
        f"{label:>15}: {result['sent']} digests of ~{result['size_kb']:.0f} KB; ours {rate:,.0f} msg/s, raw "
        f"{raw_rate:,.0f} msg/s, ratio {result['ratio']:.2f} (target >= {0.8 if 'dkim' in label else 0.9}); "
        f"our CPU {result['cpu_ms_alone']:.3f} ms/msg alone (target <= 0.8), "
        f"{result['cpu_ms_with_smtp']:.3f} ms/msg with our SMTP client (raw client {result['raw_cpu_ms']:.3f}); "
        f"peak RSS {result['peak_rss_mb']:.0f} MB; rounds ours {result['walls']} raw {result['raw_walls']} s",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="10,000 subscribers, 2 rounds")
    parser.add_argument("--subscribers", type=int, default=int(os.environ.get("BENCH_SUBSCRIBERS", "100000")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="sqlite,postgres,dkim", help="comma list of sqlite, postgres, dkim")
    parser.add_argument("--sink", choices=("aiosmtpd", "fast"), default="aiosmtpd")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of older code (e.g. `git archive main digest | tar -x -C DIR`): each configuration "
        "is measured with it first, then with this code, under the same conditions",
    )
    args, _unknown = parser.parse_known_args()  # scripts/bench passes the same flags to every benchmark
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child_raw(spec) if spec["mode"] == "raw" else child_ours(spec)))
        return 0

    from digest.demo.smtp_sink import SinkProcess
    from digest.demo.snapshot_server import SnapshotServer

    n = 10_000 if args.quick else args.subscribers
    rounds = 2 if args.quick else args.rounds
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    load = os.getloadavg()
    print(
        f"realistic run: {n} subscribers, 8 rule sets, {PAPERS}-paper day, max_papers = {MAX_PAPERS}, "
        f"{args.sink} sink in another process, 4 connections, best of {rounds} alternating rounds; "
        f"load average at start {load[0]:.1f} ({os.cpu_count()} cores)",
        flush=True,
    )
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        SnapshotServer(Path(tmp_name)) as hf,
        SinkProcess(fast=args.sink == "fast") as sink,
    ):
        tmp = Path(tmp_name)
        hf.add_day(DAY, day_items())
        secret = tmp / "secret"
        secret.write_text("bench-" + uuid.uuid4().hex * 2)
        base: dict[str, Any] = {"hf": hf.base_url, "port": sink.port, "secret": str(secret), "tmp": tmp_name}
        keys = dkim_keys(tmp)
        for what in wanted:
            kind = "postgres" if what == "postgres" else "sqlite"
            spec = dict(base)
            if what == "dkim":
                spec["digest"] = {
                    "dkim_key_file": keys["rsa"],
                    "dkim_selector": "bench",
                    "dkim_domain": "example.org",
                }
            with database_copies(kind, tmp, n) as fresh:
                if args.baseline:
                    before = {**spec, "code": str(args.baseline.resolve())}
                    results.append(measure(f"{what}-before", kind, before, fresh, rounds))
                results.append(measure(what, kind, spec, fresh, rounds))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
