"""Planning streams the subscribers in id-ordered chunks (DESIGN section 11: 1M subscribers in < 500 MB).

Tiny chunks (2 subscribers) put every boundary in play. Real parts: the captured HF day on a loopback HTTP
server, a real SMTP server, SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_helpers import DAY, NOW, mails_to, make_config, subscribe

from digest import planning as plan_module
from digest.config import Config
from digest.mailer import SmtpPool
from digest.models import SubscriberStatus
from digest.pipeline import RunOptions, fetch_and_store, run_digest
from digest.planning import plan_outbox, plan_run, unplanned
from digest.store import db, planning, runs
from digest.store.tables import delivered_paper, delivery, rule, subscriber
from digest.store.tables import run as run_table

FAST = RunOptions(retry_base_s=0.05)
OTHER_DAY = DAY - timedelta(days=1)


def mixed_population(engine: sa.Engine) -> dict[str, int]:
    """Daily and weekly readers (due and not due), inactive ones, a broken stored rule, a reader with a
    paper already delivered, one with a paper promised by an unfinished row, one already planned today."""
    ids = {
        "agents": subscribe(engine, "agents@example.org", "agent*"),
        "video": subscribe(engine, "video@example.org", "title:video", "org:Google"),
        "nothing": subscribe(engine, "nothing@example.org", "zebrafish"),
        "weekly-due": subscribe(engine, "wd@example.org", "model*", cadence="weekly", weekday=DAY.weekday()),
        "weekly-not": subscribe(
            engine, "wn@example.org", "model*", cadence="weekly", weekday=(DAY.weekday() + 1) % 7
        ),
        "paused": subscribe(engine, "paused@example.org", "agent*"),
        "broken": subscribe(engine, "broken@example.org", "agent*"),
        "seen": subscribe(engine, "seen@example.org", "agent*"),
        "promised": subscribe(engine, "promised@example.org", "agent*", "learning"),
        "planned": subscribe(engine, "planned@example.org", "agent*"),
        "same-rules": subscribe(engine, "same@example.org", "agent*"),
        "upvoted": subscribe(engine, "up@example.org", "upvotes:>=5 learning"),
    }
    other = runs.claim_run(engine, OTHER_DAY, NOW, owner="elsewhere:1:x")
    today = runs.claim_run(engine, DAY, NOW, owner="elsewhere:1:y")
    with engine.begin() as conn:
        conn.execute(subscriber.update().where(subscriber.c.id == ids["paused"]).values(status="paused"))
        conn.execute(rule.update().where(rule.c.subscriber_id == ids["broken"]).values(query="(agent"))
        conn.execute(
            delivered_paper.insert().values(
                subscriber_id=ids["seen"], paper_id="2608.19880", delivered_at=NOW
            )
        )
    planning.write_plan(engine, other.id, [planning.PlannedDelivery(ids["promised"], ["2608.19880"])], NOW)
    planning.write_plan(engine, today.id, [planning.PlannedDelivery(ids["planned"], ["2608.19880"])], NOW)
    ids["run"] = today.id
    return ids


def rows_of(engine: sa.Engine, run_id: int) -> dict[int, tuple[str, list[str]]]:
    q = sa.select(delivery.c.subscriber_id, delivery.c.state, delivery.c.paper_ids).where(
        delivery.c.run_id == run_id
    )
    with engine.connect() as conn:
        return {sid: (state, list(papers)) for sid, state, papers in conn.execute(q)}


async def stored_day(tmp_path: Path, hf: Any, db_url: str) -> tuple[Config, sa.Engine]:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=1, db_url=db_url)
    engine = db.open_database(config.database_url)
    await fetch_and_store(config, engine, DAY, now=NOW)
    return config, engine


async def test_chunked_planning_writes_the_same_plan_as_one_chunk_and_as_the_whole_list(
    tmp_path: Path, hf: Any, db_url: str
) -> None:
    config, engine = await stored_day(tmp_path, hf, db_url)
    ids = mixed_population(engine)
    run_id = ids["run"]
    before = rows_of(engine, run_id)  # the row planned earlier today
    todo = unplanned(engine, DAY)
    assert (todo.count, todo.weekly) == (9, True), "not the paused, the weekly of another day, the planned"
    # Today's planner over the whole list at once, for who has no row yet.
    whole = {p.subscriber_id: list(p.paper_ids) for p in plan_run(config, engine, DAY)}
    whole = {sid: papers for sid, papers in whole.items() if sid not in before}

    plan_outbox(config, engine, run_id, lambda: NOW, chunk_size=100_000)
    one_chunk = rows_of(engine, run_id)
    with engine.begin() as conn:
        conn.execute(
            delivery.delete().where(delivery.c.run_id == run_id, delivery.c.subscriber_id.notin_(before))
        )
    plan_outbox(config, engine, run_id, lambda: NOW, chunk_size=2)
    chunked = rows_of(engine, run_id)

    assert chunked == one_chunk
    assert {sid: papers for sid, (_, papers) in chunked.items() if sid not in before} == whole
    assert chunked[ids["planned"]] == before[ids["planned"]], "a planned reader keeps the row they had"
    assert ids["paused"] not in chunked and ids["weekly-not"] not in chunked
    assert chunked[ids["nothing"]] == ("skipped", []) and chunked[ids["broken"]] == ("skipped", [])
    agents = chunked[ids["agents"]][1]
    assert "2608.19880" in agents and chunked[ids["same-rules"]][1] == agents
    assert chunked[ids["seen"]][1] == [p for p in agents if p != "2608.19880"], "never a paper twice"
    assert "2608.19880" not in chunked[ids["promised"]][1], "nor one an unfinished row promises"
    assert chunked[ids["weekly-due"]][0] == "pending"
    assert not unplanned(engine, DAY)
    engine.dispose()


async def test_a_slot_plans_only_its_audience_and_a_later_slot_the_rest(
    tmp_path: Path, hf: Any, db_url: str
) -> None:
    config, engine = await stored_day(tmp_path, hf, db_url)
    ids = [subscribe(engine, f"r{i}@example.org", "agent*") for i in range(7)]
    claim = runs.claim_run(engine, DAY, NOW)
    audience = set(ids[1::2])
    assert unplanned(engine, DAY, audience).count == 3

    assert plan_outbox(config, engine, claim.id, lambda: NOW, audience, chunk_size=2) == 3
    assert set(rows_of(engine, claim.id)) == audience
    assert plan_outbox(config, engine, claim.id, lambda: NOW, chunk_size=2) == 4
    assert set(rows_of(engine, claim.id)) == set(ids)
    assert plan_outbox(config, engine, claim.id, lambda: NOW, chunk_size=2) == 0, "nobody twice"
    engine.dispose()


async def test_a_run_that_dies_between_chunks_loses_nobody_and_plans_nobody_twice(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(config.database_url)
    emails = [f"reader{i}@example.org" for i in range(7)]
    for address in emails:
        subscribe(engine, address, "agent*")
    monkeypatch.setattr(plan_module, "PLAN_CHUNK", 2)
    written: list[int] = []
    real_write = plan_module.write_chunk

    def dies_at_the_third_chunk(engine_: sa.Engine, run_id: int, rows: Any, now: Any, **kw: Any) -> int:
        if len(written) == 2:
            raise RuntimeError("the process was killed")
        written.append(len(rows))
        return real_write(engine_, run_id, rows, now, **kw)

    monkeypatch.setattr(plan_module, "write_chunk", dies_at_the_third_chunk)
    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        with pytest.raises(RuntimeError):
            await run_digest(config, engine, DAY, pool, options=FAST, clock=lambda: NOW)
    with engine.connect() as conn:
        first = dict(conn.execute(sa.select(delivery.c.subscriber_id, delivery.c.id)).all())
        planned_at = conn.execute(sa.select(run_table.c.planned_at)).scalar_one()
    assert (len(first), planned_at, server.messages) == (4, None, []), "two chunks written, run not planned"

    monkeypatch.setattr(plan_module, "write_chunk", real_write)
    later = NOW + runs.STALE_AFTER + timedelta(minutes=1)  # the dead run's heartbeat is stale: taken over
    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        report = await run_digest(config, engine, DAY, pool, options=FAST, clock=lambda: later)

    assert (report.status, report.sent) == ("done", 7), report
    for address in emails:
        assert len(mails_to(server.messages, address)) == 1, address
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(delivery.c.subscriber_id, delivery.c.id)).all())
    assert len(rows) == 7 and all(rows[sid] == row_id for sid, row_id in first.items()), "kept, not redone"
    engine.dispose()


def test_inactive_readers_between_the_page_and_the_load_are_not_planned(engine: sa.Engine) -> None:
    a = subscribe(engine, "a@example.org", "agent*")
    b = subscribe(engine, "b@example.org", "agent*")
    with engine.begin() as conn:
        conn.execute(
            subscriber.update().where(subscriber.c.id == b).values(status=SubscriberStatus.PAUSED.value)
        )
    assert [s.id for s in planning.active_with_rules(engine, [a, b])] == [a]
    assert [s.id for s in planning.unplanned_page(engine, DAY, 0, 10)] == [a]
    assert planning.unplanned_page(engine, DAY, a, 10) == []
