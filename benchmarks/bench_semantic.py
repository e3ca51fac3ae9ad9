"""Benchmark: like: rules (semantic extra). Printed, never asserted.

Standalone: ``python benchmarks/bench_semantic.py [--quick]``.

- embedding throughput of the local model (all-MiniLM-L6-v2, CPU), papers/s, on the captured HF days;
- matching cost for 100k subscribers with 3 liked papers each, over one window of papers: the one matrix
  product (liked papers x window) plus the per-subscriber bitset lookups in the BatchMatcher, against a
  naive per-subscriber loop on a sample; time and extra memory (targets: < 2 s, < 300 MB);
- quality: for a handful of captured papers, their nearest neighbours among all captured days, with the
  topic words they share.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from digest.embeddings import embed_papers, model
from digest.models import Paper, Rule
from digest.rules import BatchMatcher
from digest.rules.semantic import DIMENSIONS, Liked, SemanticIndex, from_bytes
from digest.sources import papers_from_file

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT.parent / "shared" / "fixtures" / "hf", ROOT / "digest" / "demo_data")


def captured_papers(quick: bool) -> list[Paper]:
    folder = next(f for f in SOURCES if f.is_dir() and any(f.glob("api_daily_papers_date-*.json")))
    files = sorted(folder.glob("api_daily_papers_date-*.json"))
    papers: dict[str, Paper] = {}
    for path in files[-1:] if quick else files:
        for p in papers_from_file(path):
            papers.setdefault(p.id, p)
    return list(papers.values())


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def bench_embedding(papers: list[Paper]) -> dict[str, np.ndarray]:
    started = time.perf_counter()
    model()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    blobs = embed_papers(papers)
    took = time.perf_counter() - started
    print(f"model load (once per process): {loaded:.1f} s")
    print(
        f"embedding: {len(papers)} papers (title + abstract) in {took:.2f} s = {len(papers) / took:.1f} papers/s"
    )
    return {pid: from_bytes(b) for pid, b in blobs.items()}


def random_units(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIMENSIONS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def bench_matching(subscribers: int, per_sub: int, pool: int, window_size: int) -> None:
    rng = np.random.default_rng(7)
    window = [
        Paper(id=f"2611.{i:05d}", title=f"paper {i}", summary="abstract", daily_date=_day())
        for i in range(window_size)
    ]
    window_vecs = list(random_units(rng, window_size))
    liked_vecs = random_units(rng, pool)
    # Liked papers cluster around the window in real life; tilt some so a realistic share matches.
    liked_vecs[: pool // 10] = window_vecs[0] * 0.8 + liked_vecs[: pool // 10] * 0.6
    liked_vecs /= np.linalg.norm(liked_vecs, axis=1, keepdims=True)
    liked = {f"2501.{k:05d}": Liked(f"liked {k}", liked_vecs[k]) for k in range(pool)}
    ids = list(liked)
    picks = rng.integers(0, pool, size=(subscribers, per_sub))
    rules = [[Rule(f"like:{ids[j]}") for j in row] for row in picks]
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    index = SemanticIndex(window_vecs, liked, 0.55)
    built = time.perf_counter() - started
    matcher = BatchMatcher(window, likes=index)
    total = 0
    for sub_rules in rules:
        total += len(matcher.match(sub_rules))
    took = time.perf_counter() - started
    extra = rss_mb() - before
    print(
        f"matching: {subscribers:,} subscribers x {per_sub} liked (pool of {pool:,} distinct liked papers) "
        f"over {window_size} papers: {took:.2f} s (index {built:.2f} s), +{extra:.0f} MB RSS, "
        f"{total:,} matches  [target < 2 s, < 300 MB]"
    )
    sample = min(subscribers, 2000)
    started = time.perf_counter()
    naive_total = 0
    for row in picks[:sample]:
        for vec in window_vecs:
            if any(float(np.dot(liked_vecs[j], vec)) >= 0.55 for j in row):
                naive_total += 1
    naive = (time.perf_counter() - started) / sample * subscribers
    print(
        f"naive per-subscriber loop (cosine per pair), extrapolated from {sample:,}: {naive:.1f} s -> {naive / took:.0f}x slower"
    )


def _day() -> object:
    from datetime import date

    return date(2026, 11, 20)


def topic_words(p: Paper) -> set[str]:
    return {w for w in re.findall(r"[a-z]{5,}", f"{p.title} {p.summary}".lower())}


def quality(papers: list[Paper], vectors: dict[str, np.ndarray], probes: int) -> None:
    matrix = np.stack([vectors[p.id] for p in papers])
    scores = matrix @ matrix.T
    words = [topic_words(p) for p in papers]
    # Topic words: shared, and rare in the corpus (in at most 10% of the papers), so "propose" never counts.
    df: dict[str, int] = {}
    for ws in words:
        for w in ws:
            df[w] = df.get(w, 0) + 1
    rare = {w for w, n in df.items() if n <= max(2, len(papers) // 10)}
    print("\nquality: nearest neighbours among the captured days (cosine; shared topic words)")
    print("| paper | nearest neighbour | cosine | shared topic words (rarest first) |")
    print("|---|---|---|---|")
    step = max(1, len(papers) // probes)
    for i in range(0, len(papers), step)[:probes]:
        row = scores[i].copy()
        row[i] = -2
        j = int(np.argmax(row))
        shared = sorted(words[i] & words[j] & rare, key=lambda w: (df[w], w))[:6]
        print(f"| {papers[i].title[:60]} | {papers[j].title[:60]} | {row[j]:.2f} | {', '.join(shared)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one captured day, 10k subscribers")
    args = parser.parse_args()
    papers = captured_papers(args.quick)
    vectors = bench_embedding(papers)
    bench_matching(10_000 if args.quick else 100_000, 3, 20_000, 150)
    quality(papers, vectors, 4 if args.quick else 8)


if __name__ == "__main__":
    sys.exit(main())
