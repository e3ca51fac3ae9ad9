"""One plan for the run, the dry run and the previews; `smtp.max_attempts` counts attempts within one run.

Real parts: the captured HF days on a loopback HTTP server, the fault-injecting aiosmtpd server, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pipeline_helpers import DAY, mails_to, make_config, parse, subscribe
from smtp_server import FaultySmtpServer

from digest.mailer import SmtpPool
from digest.pipeline import RunOptions, dry_run_digest, run_digest
from digest.store import db
from digest.store.tables import delivery

PAPER_LINK = re.compile(r"https://huggingface\.co/papers/(\d{4}\.\d{4,5})\b")


def paper_ids(raw: bytes) -> set[str]:
    body = parse(raw).get_body(("plain",))
    assert body is not None
    return set(PAPER_LINK.findall(body.get_content()))


async def test_a_weekly_dry_run_shows_what_the_real_run_sends(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server: FaultySmtpServer = smtp_server()
    config = make_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, source={"lookback_days": 1}
    )
    engine = db.open_database(config.database_url)
    later = DAY + timedelta(days=5)  # 2026-08-21 is 5 days back: inside a week, beyond lookback 1
    subscribe(engine, "weekly@example.org", "agent*", cadence="weekly", weekday=later.weekday())

    dry = await dry_run_digest(config, engine, later, tmp_path / "dry")
    files = sorted((tmp_path / "dry").glob("*.eml"))
    assert dry.sent == 1 and len(files) == 1, "the dry run fetches the weekly window, as the run does"
    shown = paper_ids(files[0].read_bytes())
    assert "2608.19880" in shown  # EnvHarness, "LLM agents", of 2026-08-21

    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        report = await run_digest(config, engine, later, pool, options=RunOptions(retry_base_s=0.05))
    assert report.sent == 1
    (mail,) = mails_to(server.messages, "weekly@example.org")
    assert paper_ids(mail.as_bytes()) == shown
    engine.dispose()


async def test_max_attempts_counts_attempts_within_one_run_and_later_runs_go_on(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, smtp={"max_attempts": 2})
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("RCPT", *["451 4.3.0 try again later"] * 20, to="ada@example.org")
    fast = RunOptions(retry_base_s=0.01)
    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        first = await run_digest(config, engine, DAY, pool, options=fast)
    with engine.connect() as conn:
        state, attempts = conn.execute(sa.select(delivery.c.state, delivery.c.attempts)).one()
    assert (first.status, state, attempts) == ("incomplete", "retry", 2), (
        "two attempts in this run, then wait"
    )

    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        await run_digest(config, engine, DAY + timedelta(days=1), pool, options=fast)
    with engine.connect() as conn:
        state, attempts = conn.execute(
            sa.select(delivery.c.state, delivery.c.attempts).order_by(delivery.c.id)
        ).first()
    assert (state, attempts) == ("retry", 4), "a later run tries again, max_attempts times"
    assert mails_to(server.messages, "ada@example.org") == []
    engine.dispose()
