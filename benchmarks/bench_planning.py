"""Planning benchmark (printed, never asserted): DESIGN section 11, "planning streams subscribers in chunks
(1M subscribers < 500 MB RSS)".

N subscribers (default 1,000,000; ``--subscribers N`` or ``$BENCH_SUBSCRIBERS``; ``--quick`` = 50,000) with a
mix of rules: most share one of the eight rule sets of bench_data, a fifth pick two of a few dozen words
(a few thousand distinct sets), a tenth have a rule set of their own, 4% are weekly (half of them due), and
one in ten has a paper of the day already delivered. The day is bench_data's 120 papers.

Each measurement is a child process (clean CPU and peak RSS): it claims the run and times ``unplanned``
(what every slot asks) and the plan into the outbox under the planning lock. Printed: subscribers/s, CPU
per subscriber and peak RSS (ru_maxrss), on SQLite and on PostgreSQL ($DIGEST_TEST_PG_URL; skipped with a
line when unset).

    python benchmarks/bench_planning.py [--quick] [--subscribers N] [--only sqlite,postgres] [--no-memo]
        [--baseline DIR]   # DIR: older code (`git archive main digest | tar -x -C DIR`), measured first
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_data import DAY, RULES, config_text, database_copies, day_items, load_config_text, subscriber_row

WORDS = [
    "diffusion",
    "agent",
    "reasoning",
    "video",
    "robot",
    "graph",
    "speech",
    "audio",
    "retrieval",
    "benchmark",
    "alignment",
    "safety",
    "vision",
    "language",
    "transformer",
    "attention",
    "quantization",
    "pruning",
    "distillation",
    "sparse",
    "mixture",
    "expert",
    "token",
    "memory",
    "planning",
    "policy",
    "reward",
    "preference",
    "dataset",
    "evaluation",
    "multimodal",
    "medical",
    "code",
    "math",
    "physics",
    "3d",
    "scene",
    "segmentation",
    "detection",
    "tracking",
    "generation",
    "editing",
]
BATCH = 20_000


def rules_for(i: int) -> list[str]:
    """The mix: 70% one of eight shared rule sets, 20% two words (a few thousand sets), 10% their own."""
    kind = i % 10
    if kind < 7:
        return RULES[i % len(RULES)]
    a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
    if kind < 9:
        return [f"{a} OR {b}", f"title:{b}*"]
    return [f'"{a} {b}" OR {a}', f"abstract:{b} -survey{i}"]  # -survey<i>: a rule set nobody shares


def fill(url: str, n: int) -> None:
    import sqlalchemy as sa

    from digest.sources import papers_from_api_json
    from digest.store import db
    from digest.store.papers import upsert_papers
    from digest.store.tables import delivered_paper, rule, subscriber

    engine = db.open_database(url)
    now = datetime.now(UTC)
    papers = papers_from_api_json(day_items(), day=DAY)
    upsert_papers(engine, papers, now)
    first_paper = max(papers, key=lambda p: p.upvotes).id
    for start in range(0, n, BATCH):
        with engine.begin() as conn:
            rows = [
                subscriber_row(
                    f"reader{i:07d}@example.org",
                    now,
                    status="active" if i % 50 else "paused",
                    cadence="weekly" if i % 25 == 3 else "daily",
                    weekday=DAY.weekday() if i % 50 == 3 else (DAY.weekday() + 1) % 7,
                )
                for i in range(start, min(n, start + BATCH))
            ]
            conn.execute(subscriber.insert(), rows)
            ids = conn.execute(
                sa.select(subscriber.c.id)
                .where(subscriber.c.email >= rows[0]["email"])
                .order_by(subscriber.c.id)
            ).scalars()
            rule_rows, seen = [], []
            for i, sid in enumerate(ids, start):
                rule_rows += [
                    {"subscriber_id": sid, "position": k, "name": "", "query": q}
                    for k, q in enumerate(rules_for(i))
                ]
                if i % 10 == 5:
                    seen.append({"subscriber_id": sid, "paper_id": first_paper, "delivered_at": now})
            conn.execute(rule.insert(), rule_rows)
            if seen:
                conn.execute(delivered_paper.insert(), seen)
    engine.dispose()


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from digest import planning as planning_mod
    from digest.store import db, planning, runs

    if spec.get("no_memo"):
        _forget_ranked()
    config = load_config_text(config_text(spec["db"], spec["secret"]), spec["tmp"])
    engine = db.open_database(config.database_url)
    claim = runs.claim_run(engine, DAY, datetime.now(UTC))
    rss_before = _rss()
    cpu0, t0 = time.process_time(), time.perf_counter()
    todo = planning_mod.unplanned(engine, DAY)
    todo_s = time.perf_counter() - t0
    count = todo.count if hasattr(todo, "count") else len(todo)
    with planning.planning_lock(engine):
        if hasattr(planning_mod, "plan_outbox"):
            planning_mod.plan_outbox(config, engine, claim.id, lambda: datetime.now(UTC))
        else:  # --baseline: the code before streaming planned the whole list at once
            subs = [s for s in planning_mod.due_subscribers(engine, DAY) if s.id in todo]
            plan = [p.row() for p in planning_mod.Planner(config, engine, DAY, explain=False).plan(subs)]
            planning.write_plan(engine, claim.id, plan, datetime.now(UTC))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    with engine.connect() as conn:
        written = conn.exec_driver_sql("SELECT count(*) FROM delivery").scalar_one()
    engine.dispose()
    return {
        "due": count,
        "written": written,
        "wall": wall,
        "cpu": cpu,
        "unplanned_s": todo_s,
        "rss_kb": _rss(),
        "rss_before_kb": rss_before,
    }


def _forget_ranked() -> None:
    """--no-memo: rank every subscriber's matches afresh (what planning did before the ranked memo)."""
    from digest.models import MatchedPaper
    from digest.rules import BatchMatcher

    def ranked(self: Any, rules: Any) -> Any:
        hits = sorted((self.papers[i] for i in self.match(rules)), key=lambda p: (-p.upvotes, p.id))
        return [MatchedPaper(p, ()) for p in hits]

    BatchMatcher.ranked = ranked  # type: ignore[method-assign]


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    if spec.get("code"):
        env["PYTHONPATH"] = spec["code"]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def report(label: str, r: dict[str, Any]) -> None:
    n = max(r["due"], 1)
    print(
        f"{label:>22}: {r['due']:,} due, {r['written']:,} rows; {r['due'] / r['wall']:,.0f} subscribers/s "
        f"({r['wall']:.1f} s, of which unplanned() {r['unplanned_s']:.1f} s); CPU {r['cpu'] / n * 1e6:.0f} us "
        f"per subscriber; peak RSS {r['rss_kb'] / 1024:.0f} MB (target < 500; {r['rss_before_kb'] / 1024:.0f} "
        "MB before planning)",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="50,000 subscribers")
    parser.add_argument(
        "--subscribers", type=int, default=int(os.environ.get("BENCH_SUBSCRIBERS", "1000000"))
    )
    parser.add_argument("--only", default="sqlite,postgres", help="comma list of sqlite, postgres")
    parser.add_argument("--no-memo", action="store_true", help="also measure without the ranked-match memo")
    parser.add_argument("--baseline", type=Path, help="older code, measured first on the same database")
    args, _unknown = parser.parse_known_args()  # scripts/bench passes the same flags to every benchmark
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    n = 50_000 if args.quick else args.subscribers
    print(
        f"planning: {n:,} subscribers, load average at start {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        secret = tmp / "secret"
        secret.write_text("bench-" + os.urandom(24).hex())
        base = {"secret": str(secret), "tmp": tmp_name}
        for kind in [w.strip() for w in args.only.split(",") if w.strip()]:
            if kind == "postgres" and not os.environ.get("DIGEST_TEST_PG_URL"):
                print("postgres: skipped ($DIGEST_TEST_PG_URL is not set; see scripts/start-postgres)")
                continue
            t0 = time.perf_counter()
            with database_copies(kind, tmp, n, fill, prefix="bench_plan") as copies:
                print(f"{kind}: filled in {time.perf_counter() - t0:.0f} s", flush=True)
                if args.baseline:
                    report(
                        f"{kind} baseline",
                        run_child({**base, "db": copies("base"), "code": str(args.baseline)}),
                    )
                if args.no_memo:
                    report(
                        f"{kind} without memo", run_child({**base, "db": copies("nomemo"), "no_memo": True})
                    )
                report(kind, run_child({**base, "db": copies("ours")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
