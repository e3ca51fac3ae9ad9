"""Benchmark: parse + bulk upsert of 1,000 Daily Papers (issue 3: "well under a second here").

Standalone: ``python benchmarks/bench_source.py [--quick] [--papers N]``. Items are the captured HF days in
../shared/fixtures/hf (the bundled digest/demo_data copy when that is missing), replicated under new arXiv
ids. Printed, never asserted:

- parse: JSON text -> validated, normalised Papers (pydantic schema + white-space collapse);
- html: the 2024 listing page -> Papers (BeautifulSoup + data-props JSON), for comparison;
- upsert new / upsert again: bulk INSERT ... ON CONFLICT into a fresh, migrated SQLite database
  (and PostgreSQL too when $DIGEST_TEST_PG_URL is set);
- fetch: the same papers over real loopback HTTP from the snapshot server (10 pages of 100).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_data import scratch_databases

from digest.config import SourceConfig
from digest.demo.snapshot_server import SnapshotServer
from digest.sources import fetch_day, papers_from_api_json
from digest.sources.hf_html import parse_listing
from digest.store.db import open_database
from digest.store.papers import load_papers, upsert_papers

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT.parent / "shared" / "fixtures" / "hf", ROOT / "digest" / "demo_data")
DAY = date(2026, 8, 21)
NOW = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)


def _folder() -> Path:
    for folder in SOURCES:
        if any(folder.glob("api_daily_papers_date-*.json")):
            return folder
    sys.exit("no captured HF files found in " + " or ".join(map(str, SOURCES)))


def _items(folder: Path, count: int) -> list[dict[str, Any]]:
    base: list[dict[str, Any]] = []
    for path in sorted(folder.glob("api_daily_papers_date-202[56]-*.json")):
        base.extend(json.loads(path.read_text("utf-8")))
    out = []
    for i in range(count):
        item = copy.deepcopy(base[i % len(base)])
        item["paper"]["id"] = f"2608.{10000 + i}"
        item["paper"]["submittedOnDailyAt"] = f"{DAY.isoformat()}T00:00:00.000Z"
        out.append(item)
    return out


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _line(label: str, n: int, best: float, median: float) -> None:
    print(
        f"{label:<28} {n:>6} papers  best {best * 1000:8.1f} ms  median {median * 1000:8.1f} ms  "
        f"({best / n * 1e6:6.1f} us/paper)"
    )


def _bench_db(label: str, url: str, papers: list[Any], repeat: int) -> None:
    engine = open_database(url)
    try:
        first = time.perf_counter()
        upsert_papers(engine, papers, NOW)
        new = time.perf_counter() - first
        _line(f"upsert new ({label})", len(papers), new, new)
        tick = iter(range(1, 10_000))
        best, median = _best(
            lambda: upsert_papers(engine, papers, NOW + timedelta(minutes=next(tick))), repeat
        )
        _line(f"upsert again ({label})", len(papers), best, median)
        best, median = _best(lambda: load_papers(engine, DAY, DAY), repeat)
        _line(f"load window ({label})", len(papers), best, median)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer papers and repeats")
    parser.add_argument(
        "--papers", type=int, default=None, help="how many papers (default 1000, 200 with --quick)"
    )
    args = parser.parse_args()
    count = args.papers or (200 if args.quick else 1000)
    repeat = 3 if args.quick else 7
    folder = _folder()
    items = _items(folder, count)
    text = json.dumps(items)
    print(f"bench_source: {count} papers ({len(text) / 1e6:.1f} MB of API JSON), best of {repeat}")

    best, median = _best(lambda: papers_from_api_json(json.loads(text), day=DAY), repeat)
    _line("parse API JSON", count, best, median)
    papers = papers_from_api_json(json.loads(text), day=DAY)
    assert len(papers) == count

    listing = next(iter(sorted(folder.glob("listing_papers_*.html"))), None)
    if listing is not None:
        html = listing.read_text("utf-8")
        n = len(parse_listing(html, url="bench").items)
        best, median = _best(
            lambda: papers_from_api_json(parse_listing(html, url="bench").items, day=DAY), repeat
        )
        _line("parse HTML listing", n, best, median)

    with tempfile.TemporaryDirectory() as tmp:
        _bench_db("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", papers, repeat)
    pg = os.environ.get("DIGEST_TEST_PG_URL")
    if pg:
        with scratch_databases("bench_source") as create:
            _bench_db("postgresql", create("db"), papers, repeat)

    with SnapshotServer() as srv:
        srv.add_day(DAY, items)
        source = SourceConfig(base_url=srv.base_url)

        async def fetches() -> list[float]:
            times = []
            async with (
                httpx.AsyncClient() as client
            ):  # one client, as a run uses: no TLS-context setup per fetch
                for _ in range(repeat + 1):
                    start = time.perf_counter()
                    await fetch_day(source, DAY, client=client)
                    times.append(time.perf_counter() - start)
            return times[1:]  # the first one warms up the schema and the connection

        times = asyncio.run(fetches())
        _line("fetch over loopback HTTP", count, min(times), statistics.median(times))

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(f"sqlite:///{Path(tmp) / 'fresh.db'}")  # migrated before the clock starts
        try:
            start = time.perf_counter()
            upsert_papers(engine, papers_from_api_json(json.loads(text), day=DAY), NOW)
            total = time.perf_counter() - start
        finally:
            engine.dispose()
    print(f"parse + upsert of {count} new papers (JSON text -> SQLite rows): {total * 1000:.1f} ms")


if __name__ == "__main__":
    main()
