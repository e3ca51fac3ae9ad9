"""Worker processes, bulk subscribers and outbox reading for the scale-out tests."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session
from operate_helpers import serve_config, spawn_digest

from digest.config_load import load_config
from digest.demo.smtp_sink import SinkHandler
from digest.jobs import PlanDeferrer
from digest.pipeline import open_store
from digest.store.tables import delivery, rule, run, subscriber

RULES = ("agent*", "diffusion OR reasoning", "language model*", "benchmark")


def add_subscribers(engine: sa.Engine, count: int) -> list[str]:
    """``count`` active subscribers (several rule mixes), inserted in bulk; their addresses."""
    now = datetime.now(UTC)
    emails = [f"reader{i:05d}@example.org" for i in range(count)]
    base = {"status": "active", "cadence": "daily", "weekday": 0, "managed_by_config": False}
    rows = [{**base, "email": e, "created_at": now, "updated_at": now, "confirmed_at": now} for e in emails]
    with engine.begin() as conn:
        ids = conn.execute(sa.insert(subscriber).returning(subscriber.c.id), rows).scalars().all()
        conn.execute(
            sa.insert(rule),
            [
                {"subscriber_id": sid, "position": 0, "name": "", "query": RULES[i % len(RULES)]}
                for i, sid in enumerate(ids)
            ],
        )
    return emails


def worker_config(home: Path, *, hf_url: str, smtp_port: int, db_url: str, **workers: Any) -> Path:
    """A config file in ``home`` (one "machine") with workers enabled on the shared database."""
    home.mkdir(parents=True, exist_ok=True)
    section = {"enabled": True, "chunk_size": 500, "stalled_after_s": 5, **workers}
    return serve_config(home, hf_url=hf_url, smtp_port=smtp_port, db_url=db_url, workers=section)


def start_worker(config: Path, log_path: Path, concurrency: int = 1) -> subprocess.Popen[str]:
    """`digest worker` in its own working directory (the config's folder)."""
    return spawn_digest(config, log_path, "worker", "--concurrency", str(concurrency), cwd=config.parent)


def defer_plan(config: Path, day: date) -> None:
    """What `serve` does at a scheduled time with workers enabled: defer the date's plan job."""
    cfg = load_config(config)
    engine = open_store(cfg)

    async def go() -> None:
        deferrer = PlanDeferrer(cfg, engine)
        try:
            await deferrer(day)
        finally:
            await deferrer.aclose()

    asyncio.run(go())
    engine.dispose()


def run_row(engine: sa.Engine, day: date) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(run).where(run.c.run_date == day)).mappings().first()
    return dict(row) if row else None


def wait_until(check: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"{what}: not within {timeout} s\n{tails}")


def run_finished(engine: sa.Engine, day: date) -> Callable[[], bool]:
    def check() -> bool:
        row = run_row(engine, day)
        return row is not None and row["status"] != "running"

    return check


def states_by_email(engine: sa.Engine) -> dict[str, str]:
    query = sa.select(subscriber.c.email, delivery.c.state).join(
        subscriber, subscriber.c.id == delivery.c.subscriber_id
    )
    with engine.connect() as conn:
        return {email: state for email, state in conn.execute(query)}


def stop(procs: list[subprocess.Popen[str]]) -> list[int | None]:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(None)
    return codes


def pid_of_owner(owner: str | None) -> int | None:
    """The pid in a run owner ``host:pid:nonce``."""
    if not owner:
        return None
    parts = owner.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


class SlowDataHandler(SinkHandler):
    """A sink that takes ``delay_s`` to answer DATA (it records the message before waiting, as a real MTA
    has it once the dot arrived): a worker spends most of its time with messages in flight."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.record(session, envelope, server)
        await asyncio.sleep(self.delay_s)
        return "250 2.0.0 OK: queued"


def sending_rows(engine: sa.Engine) -> int:
    """How many outbox rows are `sending` now (claimed, outcome not recorded)."""
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).where(delivery.c.state == "sending")).scalar() or 0
        )
