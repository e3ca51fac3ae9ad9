"""Claims in groups: one statement claims many rows, each still conditional on what was read; the batcher
hands every caller its own row, joins claims asked for while one is in flight, and gives back orphans."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from pipeline_helpers import DAY, NOW, subscribe

from digest.models import DeliveryState
from digest.store import outbox, planning, runs
from digest.store.claims import ClaimBatcher
from digest.store.settings import pause_sending
from digest.store.tables import delivered_paper, delivery, paper, subscriber


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
        won = outbox.claim_rows(conn, rows, NOW)
        again = outbox.claim_rows(conn, rows, NOW + timedelta(seconds=1))
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


def store_papers(engine: sa.Engine, *ids: str) -> None:
    """The papers the digests showed (delivered_paper rows refer to them)."""
    row = {"summary": "", "daily_date": DAY, "first_seen_at": NOW, "last_seen_at": NOW}
    with engine.begin() as conn:
        conn.execute(paper.insert(), [{"id": pid, "title": pid, **row} for pid in ids])


async def test_a_hand_over_records_the_outcome_and_claims_the_next_row_at_once(engine: sa.Engine) -> None:
    rows = planned(engine, 3)
    store_papers(engine, "p1")
    executed: list[str] = []
    commits: list[bool] = []
    with engine.connect() as conn:
        batcher = ClaimBatcher(conn, lambda: NOW)
        first = await batcher.claim(rows[0])
        assert first is not None
        sa.event.listen(conn, "before_cursor_execute", lambda *args: executed.append(args[2]))
        sa.event.listen(conn, "commit", lambda *args: commits.append(True))
        sent = outbox.Outcome(first, DeliveryState.SENT, "250 ok", delivered=["p1"], message_id="<a@x>")
        second = await batcher.claim(rows[1], [sent])
        await batcher.aclose()
    assert second is not None and second.id == rows[1].id
    assert states(engine) == {DeliveryState.SENT: 1, DeliveryState.SENDING: 1, DeliveryState.PENDING: 1}
    with engine.connect() as conn:
        shown = conn.execute(sa.select(delivered_paper.c.subscriber_id, delivered_paper.c.paper_id)).all()
        last = conn.execute(
            sa.select(subscriber.c.last_digest_at).where(subscriber.c.id == first.subscriber_id)
        )
        assert last.scalar() is not None
    assert shown == [(first.subscriber_id, "p1")]
    if engine.dialect.name == "postgresql":  # one round trip: one statement, committed by itself
        assert len(executed) == 1 and commits == [], executed


async def test_a_paused_hand_over_still_records_the_outcome_but_claims_nothing(engine: sa.Engine) -> None:
    rows = planned(engine, 2)
    with engine.connect() as conn:
        batcher = ClaimBatcher(conn, lambda: NOW)
        first = await batcher.claim(rows[0])
        assert first is not None
        assert pause_sending(engine, by="test", reason="kill switch", now=NOW)
        failed = outbox.Outcome(first, DeliveryState.RETRY, "451 later", next_attempt_at=NOW)
        assert await batcher.claim(rows[1], [failed]) is None
        await batcher.aclose()
    assert states(engine) == {DeliveryState.RETRY: 1, DeliveryState.PENDING: 1}


async def test_a_hard_bounce_in_a_hand_over_is_counted_with_its_outcome(engine: sa.Engine) -> None:
    rows = planned(engine, 2)
    with engine.connect() as conn:
        batcher = ClaimBatcher(conn, lambda: NOW, hard_bounce_limit=1)
        first = await batcher.claim(rows[0])
        assert first is not None
        bounce = outbox.Outcome(first, DeliveryState.FAILED, "550 no such user", permanent_failure=True)
        second = await batcher.claim(rows[1], [bounce])
        await batcher.aclose()
    assert second is not None
    assert batcher.take_bounced() == [first.subscriber_id]
    assert states(engine) == {DeliveryState.FAILED: 1, DeliveryState.SENDING: 1}


def test_a_batch_of_outcomes_is_recorded_row_by_row_correctly_in_one_statement(engine: sa.Engine) -> None:
    rows = planned(engine, 4)
    store_papers(engine, "p1", "p2")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        won = outbox.claim_rows(conn, rows[:3], NOW)  # the fourth stays pending: recording must not touch it
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
