"""Claims in groups: one statement claims many rows, each still conditional on what was read; the batcher
hands every caller its own row, joins claims asked for while one is in flight, and gives back orphans."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from pipeline_helpers import DAY, NOW, subscribe

from digest.models import DeliveryState
from digest.store import outbox, planning, runs
from digest.store.claims import ClaimBatcher, claim_many
from digest.store.tables import delivery


def planned(engine: sa.Engine, n: int) -> list[outbox.Due]:
    ids = [subscribe(engine, f"r{i}@example.org", "agent*") for i in range(n)]
    run = runs.claim_run(engine, DAY, NOW, owner="a:1:x")
    planning.write_plan(engine, run.id, [planning.PlannedDelivery(sid, ["p1"]) for sid in ids], NOW)
    return outbox.due_deliveries(engine, [run.id], NOW, 100)


def states(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(delivery.c.state, sa.func.count()).group_by(delivery.c.state)).all()
        )


def test_one_statement_claims_the_rows_as_read_and_skips_the_ones_moved_since(engine: sa.Engine) -> None:
    rows = planned(engine, 6)
    stolen = outbox.claim_one(engine, rows[2], NOW)  # another process took this one after our read
    assert stolen is not None
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        won = claim_many(conn, rows, NOW)
        again = claim_many(conn, rows, NOW + timedelta(seconds=1))
    assert sorted(won) == sorted(r.id for r in rows if r.id != rows[2].id)
    assert all(c.attempts == 1 and c.first_attempt_at == NOW for c in won.values())
    assert again == {}, "a row is claimed once"
    assert states(engine) == {DeliveryState.SENDING: 6}


async def test_the_batcher_gives_each_caller_its_row_and_joins_concurrent_claims(engine: sa.Engine) -> None:
    rows = planned(engine, 12)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        batcher = ClaimBatcher(conn, lambda: NOW)
        got = await asyncio.gather(*(batcher.claim(r) for r in rows))
        await batcher.aclose()
    assert [c.id if c else None for c in got] == [r.id for r in rows]
    assert batcher.statements < len(rows), "claims asked for together share a statement"
    assert states(engine) == {DeliveryState.SENDING: 12}


async def test_a_claim_whose_caller_was_cancelled_is_kept_as_an_orphan_to_give_back(
    engine: sa.Engine,
) -> None:
    rows = planned(engine, 3)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        batcher = ClaimBatcher(conn, lambda: NOW)
        tasks = [asyncio.ensure_future(batcher.claim(r)) for r in rows]
        await asyncio.sleep(0)  # all three are waiting on the statement now
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.aclose()
    assert isinstance(results[1], asyncio.CancelledError)
    assert [c.id for c in batcher.orphans] == [rows[1].id]
    outbox.release(engine, batcher.orphans, NOW, "not sent")
    assert states(engine) == {DeliveryState.SENDING: 2, DeliveryState.PENDING: 1}


def test_a_batch_of_outcomes_is_recorded_row_by_row_correctly_in_one_statement(engine: sa.Engine) -> None:
    from digest.store.tables import delivered_paper, paper

    rows = planned(engine, 4)
    with engine.begin() as conn:  # the papers the digests showed
        conn.execute(
            paper.insert(),
            [
                {
                    "id": pid,
                    "title": pid,
                    "summary": "",
                    "daily_date": DAY,
                    "first_seen_at": NOW,
                    "last_seen_at": NOW,
                }
                for pid in ("p1", "p2")
            ],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        won = claim_many(conn, rows[:3], NOW)  # the fourth stays pending: recording must not touch it
    later = NOW + timedelta(minutes=5)
    a, b, c = (won[r.id] for r in rows[:3])
    outbox.record_outcomes(
        engine,
        [
            outbox.Outcome(a, DeliveryState.SENT, "250 ok", delivered=["p1", "p2"], message_id="<a@x>"),
            outbox.Outcome(b, DeliveryState.RETRY, "451 later", next_attempt_at=later),
            outbox.Outcome(c, DeliveryState.FAILED, "550 no", permanent_failure=True),
            outbox.Outcome(
                outbox.Claimed(rows[3].id, rows[3].run_id, rows[3].subscriber_id, [], 1, NOW),
                DeliveryState.SENT,
                "250 ok",
            ),
        ],
        later,
        hard_bounce_limit=3,
    )
    # Recording the same sent row again (a retried record) adds no second delivered_paper row.
    outbox.record_outcomes(
        engine,
        [outbox.Outcome(a, DeliveryState.SENT, "250 ok", delivered=["p1"])],
        later,
        hard_bounce_limit=3,
    )
    with engine.connect() as conn:
        got = {
            r.id: (r.state, r.last_reply, r.message_id, r.next_attempt_at is not None)
            for r in conn.execute(sa.select(delivery))
        }
        papers = sorted(
            conn.execute(sa.select(delivered_paper.c.subscriber_id, delivered_paper.c.paper_id)).all()
        )
    assert got[a.id] == (DeliveryState.SENT, "250 ok", "<a@x>", False)
    assert got[b.id] == (DeliveryState.RETRY, "451 later", None, True)
    assert got[c.id] == (DeliveryState.FAILED, "550 no", None, False)
    assert got[rows[3].id][0] == DeliveryState.PENDING, "only rows in `sending` are recorded"
    assert papers == [(a.subscriber_id, "p1"), (a.subscriber_id, "p2")]
