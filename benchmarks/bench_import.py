"""Benchmark: `digest import` of a 100,000-row CSV (check every row, then one transaction of bulk SQL).

    python benchmarks/bench_import.py            # 100,000 rows, SQLite (and PostgreSQL with DIGEST_TEST_PG_URL)
    python benchmarks/bench_import.py --quick    # 10,000 rows

Rows: distinct addresses, 1-3 rules each drawn from a few hundred realistic queries (phrases, fields, OR),
a third with their own send time and zone. Prints the time to check the file, to import it (check + write),
wall and this process's CPU (the database server's work shows in the wall time only), then re-imports the
same file (every row an update). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from bench_data import scratch_databases

from digest.bulk import check_file, import_file
from digest.store import db

WORDS = [
    "diffusion",
    "agent",
    "agents",
    "transformer",
    "retrieval",
    "robot",
    "vision",
    "language",
    "reasoning",
    "graph",
    "speech",
]
ZONES = ["Asia/Tokyo", "Europe/Berlin", "America/Los_Angeles", "UTC"]


def make_csv(path: Path, rows: int) -> None:
    rnd = random.Random(1)
    queries = [
        *WORDS,
        *(f'"{a} {b}"' for a in WORDS for b in WORDS if a != b),
        *(f"title:({a} OR {b}) -survey" for a in WORDS for b in WORDS if a < b),
        'author:"Yann LeCun"',
        "org:Google upvotes:>=10",
    ]
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,rules,cadence,weekday,send_time,timezone,status\n")
        for i in range(rows):
            rules = "; ".join(rnd.sample(queries, rnd.randint(1, 3)))
            timed = i % 3 == 0
            when = f"{rnd.randrange(24):02d}:{rnd.choice((0, 15, 30, 45)):02d}" if timed else ""
            zone = rnd.choice(ZONES) if timed else ""
            cadence = "weekly" if i % 10 == 0 else "daily"
            f.write(
                f'reader{i}@example.org,Reader {i},"{rules.replace(chr(34), chr(34) * 2)}",{cadence},,{when},{zone},\n'
            )


def bench(url: str, path: Path, rows: int) -> None:
    engine = db.open_database(url)
    started = time.perf_counter()
    check_file(path, confirmed=True)
    checked = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    result = import_file(engine, path, confirmed=True)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    again = import_file(engine, path, confirmed=True)
    update, update_cpu = time.perf_counter() - started, time.process_time() - cpu
    name = engine.dialect.name
    print(
        f"{name:10s} {rows:>7,} rows: check {checked:5.2f} s ({rows / checked:,.0f} rows/s); import (check + write) "
        f"{total:5.2f} s wall / {total_cpu:5.2f} s CPU, {result.created:,} created ({rows / total:,.0f} rows/s); "
        f"re-import {update:5.2f} s wall / {update_cpu:5.2f} s CPU, {again.updated:,} updated"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = 10_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subscribers.csv"
        make_csv(path, rows)
        bench(f"sqlite:///{Path(tmp) / 'bench.db'}", path, rows)
        pg = os.environ.get("DIGEST_TEST_PG_URL")
        if pg:
            with scratch_databases("bench_import") as create:
                bench(create("db"), path, rows)


if __name__ == "__main__":
    main()
