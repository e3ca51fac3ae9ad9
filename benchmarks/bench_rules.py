"""Benchmark: matching many subscribers' keyword rules against one day's papers (DESIGN.md section 11).

    python benchmarks/bench_rules.py            # 100,000 and 1,000,000 subscribers
    python benchmarks/bench_rules.py --quick    # 20,000 subscribers

Setup: 150 papers (the 70 real captured HF papers of digest/demo_data, plus 80 more whose title, abstract,
keywords, authors and organisation are recombined from them); subscribers with 1-5 rules of 1-6 words
drawn from a Zipf-skewed vocabulary of 5,000 words (the papers' own words, minus the 100 commonest, in a
random order, topped up with words that occur in no paper). About 80% of rules are plain words; the others
use a phrase, a prefix, OR, an exclusion, a field or an upvotes filter.

Subscribers are generated in chunks and only the matching is timed (``BatchMatcher.match`` per
subscriber, from rule text, parsing included). The naive baseline parses each subscriber's rules and walks
the AST on each paper (pre-tokenised, with a word set per field); it is timed on a sample and extrapolated. Numbers are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from itertools import accumulate
from pathlib import Path

from digest.models import Paper, Rule
from digest.rules import And, BatchMatcher, Compare, Not, Or, Term, paper_text, parse_rule, words
from digest.rules.nodes import Node
from digest.rules.oracle import term_matches
from digest.rules.text import cached_paper_text

DATA = Path(__file__).resolve().parents[1] / "digest" / "demo_data"
N_PAPERS = 150
VOCAB_SIZE = 5000
CHUNK = 20_000
RULES_PER_SUBSCRIBER = (1, 2, 3, 4, 5)
RULES_WEIGHTS = (30, 25, 20, 15, 10)
WORDS_PER_RULE = (1, 2, 3, 4, 5, 6)
WORDS_WEIGHTS = (35, 25, 15, 10, 8, 7)


def load_papers() -> list[Paper]:
    """The real papers, then recombined ones up to N_PAPERS."""
    raw: list[dict[str, object]] = []
    for path in sorted(DATA.glob("api_daily_papers_*.json")):
        for item in json.loads(path.read_text(encoding="utf-8")):
            p = item["paper"]
            org = item.get("organization") or {}
            raw.append(
                {
                    "title": " ".join(p["title"].split()),
                    "summary": " ".join(p["summary"].split()),
                    "authors": tuple(a["name"] for a in p.get("authors", [])),
                    "ai_keywords": tuple(p.get("ai_keywords", ())),
                    "upvotes": p.get("upvotes", 0),
                    "organization": org.get("fullname"),
                    "organization_handle": org.get("name"),
                }
            )
    n = len(raw)
    papers = []
    for k in range(N_PAPERS):
        a, b, c = raw[k % n], raw[(k * 7 + 3) % n], raw[(k * 13 + 5) % n]
        papers.append(
            Paper(
                id=f"2510.{k:05d}",
                title=str(a["title"]),
                summary=str(b["summary"] if k >= n else a["summary"]),
                daily_date=date(2025, 10, 15),
                authors=c["authors"] if k >= n else a["authors"],  # type: ignore[arg-type]
                ai_keywords=b["ai_keywords"] if k >= n else a["ai_keywords"],  # type: ignore[arg-type]
                upvotes=int(a["upvotes"]) + (k // n),  # type: ignore[call-overload]
                organization=c["organization"],  # type: ignore[arg-type]
                organization_handle=c["organization_handle"],  # type: ignore[arg-type]
            )
        )
    return papers


def vocabulary(papers: list[Paper], rng: random.Random) -> list[str]:
    counts: Counter[str] = Counter()
    for p in papers:
        counts.update(words(" ".join((p.title, p.summary, *p.ai_keywords))))
    common = [w for w, _ in counts.most_common()]
    vocab = [w for w in common[100:] if len(w) >= 3 and not w.isdigit()][:VOCAB_SIZE]
    k = 0
    while len(vocab) < VOCAB_SIZE:  # words of the field that happen not to be in today's papers
        vocab.append(f"{vocab[k % len(vocab)]}{'qxz'[k % 3]}")
        k += 1
    rng.shuffle(vocab)
    return vocab


class RuleMaker:
    def __init__(self, vocab: list[str], rng: random.Random) -> None:
        self.vocab = vocab
        self.rng = rng
        self.cum = list(accumulate(1 / (r + 1) ** 1.07 for r in range(len(vocab))))

    def word(self) -> str:
        return self.rng.choices(self.vocab, cum_weights=self.cum)[0]

    def rule(self) -> str:
        n = self.rng.choices(WORDS_PER_RULE, WORDS_WEIGHTS)[0]
        ws = self.rng.choices(self.vocab, cum_weights=self.cum, k=n)
        kind = self.rng.random()
        if kind < 0.80 or (n == 1 and kind < 0.9):
            return " ".join(ws)
        construct = self.rng.randrange(6)
        if construct == 0 and n >= 2:
            return f"{ws[0]} OR {' '.join(ws[1:])}"
        if construct == 1 and n >= 2:
            return f'"{ws[0]} {ws[1]}" ' + " ".join(ws[2:])
        if construct == 2:
            return " ".join([*ws[:-1], ws[-1][: max(3, len(ws[-1]) - 2)] + "*"])
        if construct == 3 and n >= 2:
            return " ".join(ws[:-1]) + f" -{ws[-1]}"
        if construct == 4:
            return f"title:{ws[0]} " + " ".join(ws[1:])
        return " ".join(ws) + f" upvotes:>={self.rng.choice((5, 10, 20, 50))}"

    def subscribers(self, count: int) -> Iterator[list[list[str]]]:
        """Chunks of subscribers, each a list of rule texts."""
        done = 0
        while done < count:
            size = min(CHUNK, count - done)
            n_rules = self.rng.choices(RULES_PER_SUBSCRIBER, RULES_WEIGHTS, k=size)
            yield [[self.rule() for _ in range(k)] for k in n_rules]
            done += size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_batch(papers: list[Paper], maker: RuleMaker, count: int) -> tuple[float, float, int]:
    """Seconds to build the matcher, seconds spent matching, total matched papers."""
    cached_paper_text.cache_clear()  # time the tokenising too
    t0 = time.perf_counter()
    matcher = BatchMatcher(papers)
    build = time.perf_counter() - t0
    spent = 0.0
    matched = 0
    for chunk in maker.subscribers(count):
        t = time.perf_counter()
        for rules in chunk:
            matched += len(matcher.match(rules))
        spent += time.perf_counter() - t
    return build, spent, matched


class NaivePaper:
    """A paper prepared for the naive baseline: per field, its set of words (and its segments for phrases)."""

    def __init__(self, paper: Paper) -> None:
        self.text = paper_text(paper)
        self.sets = {f: {t for seg in segs for t in seg.tokens} for f, segs in self.text.fields.items()}


def naive_evaluate(node: Node, paper: NaivePaper) -> bool:
    """Walk the AST on one paper, with set lookups for single words (a fair, not a strawman, baseline)."""
    if isinstance(node, Term):
        if len(node.words) > 1:
            return term_matches(node, paper.text)
        w, prefix = node.words[0]
        for f in node.fields:
            words = paper.sets[f]
            if prefix:
                if any(t.startswith(w) for t in words):
                    return True
            elif w in words or w + "s" in words or w + "es" in words:
                return True
        return False
    if isinstance(node, Compare):
        return node.test(paper.text.upvotes)
    if isinstance(node, Not):
        return not naive_evaluate(node.child, paper)
    if isinstance(node, And):
        return all(naive_evaluate(c, paper) for c in node.children)
    assert isinstance(node, Or)
    return any(naive_evaluate(c, paper) for c in node.children)


def run_naive(papers: list[Paper], maker: RuleMaker, count: int) -> float:
    """Seconds per subscriber: parse each rule, walk its AST on every paper."""
    prepared = [NaivePaper(p) for p in papers]
    chunk = next(maker.subscribers(count))
    t = time.perf_counter()
    for rules in chunk:
        for rule in rules:
            root = parse_rule(rule).root
            for paper in prepared:
                naive_evaluate(root, paper)
    return (time.perf_counter() - t) / len(chunk)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="one small run (20,000 subscribers)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    papers = load_papers()
    maker = RuleMaker(vocabulary(papers, rng), rng)
    sizes = [20_000] if args.quick else [100_000, 1_000_000]
    targets = {100_000: 2.0, 1_000_000: 10.0}

    naive = run_naive(papers, maker, 300 if args.quick else 2_000)
    print(f"rules: {len(papers)} papers, vocabulary {VOCAB_SIZE} words (Zipf), 1-5 rules of 1-6 words")
    print(f"naive AST-per-paper: {naive * 1e6:,.0f} us/subscriber ({1 / naive:,.0f} subscribers/s)")
    for n in sizes:
        build, spent, matched = run_batch(papers, maker, n)
        target = f" (target < {targets[n]:.0f} s)" if n in targets else ""
        print(
            f"batch {n:>9,} subscribers: {spent:6.2f} s{target}, {n / spent:>11,.0f} subscribers/s, "
            f"index {build * 1000:.0f} ms, {matched / n:.2f} papers/subscriber, "
            f"{naive * n / spent:,.0f}x faster than naive, peak RSS {peak_rss_mb():,.0f} MB"
        )
    sample = next(maker.subscribers(2_000 if args.quick else 20_000))
    matcher = BatchMatcher(papers)
    t = time.perf_counter()
    shown = sum(len(matcher.select([Rule(r) for r in rules])) for rules in sample)
    spent = time.perf_counter() - t
    print(
        f"select with explanations: {spent / len(sample) * 1e6:,.0f} us/subscriber "
        f"({shown / len(sample):.2f} papers each, {len(sample):,} subscribers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
