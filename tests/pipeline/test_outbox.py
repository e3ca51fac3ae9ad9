"""Outbox corner cases: stale reads never win a claim; a dead process is recognised even with our pid."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from pipeline_helpers import DAY, NOW, subscribe

from digest.models import DeliveryState
from digest.store import outbox, planning, runs
from digest.store.tables import run


def test_a_claim_from_a_stale_read_loses_to_the_process_that_moved_the_row(engine: sa.Engine) -> None:
    sid = subscribe(engine, "ada@example.org", "agent*")
    claim = runs.claim_run(engine, DAY, NOW, owner="a:1:x")
    planning.write_plan(engine, claim.id, [planning.PlannedDelivery(sid, ["p1"])], NOW)
    (seen,) = outbox.due_deliveries(engine, [claim.id], NOW, 10)  # process A reads the row...
    (fresh,) = outbox.due_deliveries(engine, [claim.id], NOW, 10)
    won = outbox.claim_one(engine, fresh, NOW)  # ...process B claims it, fails temporarily, puts it back
    assert won is not None and won.attempts == 1
    later = NOW + timedelta(hours=2)
    outbox.record_outcomes(
        engine,
        [outbox.Outcome(won, DeliveryState.RETRY, "451", next_attempt_at=later)],
        NOW,
        hard_bounce_limit=3,
    )
    assert outbox.claim_one(engine, seen, NOW) is None, (
        "A's stale read must not send it again before its backoff"
    )
    (due_later,) = outbox.due_deliveries(engine, [claim.id], later, 10)
    again = outbox.claim_one(engine, due_later, later)
    assert again is not None and again.attempts == 2


def test_a_run_left_by_an_earlier_process_with_our_pid_is_recovered(engine: sa.Engine) -> None:
    me = runs.this_owner()
    host, pid, _nonce = me.rsplit(":", 2)
    ghost = f"{host}:{pid}:deadbeef"  # same host name and pid (a restarted container), another process
    runs.claim_run(engine, DAY, NOW, owner=ghost)
    assert runs.recover_abandoned(engine, NOW + timedelta(seconds=5), me) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(run.c.status)).scalar() == "interrupted"


def test_planning_is_serialised_across_processes_and_dates(engine: sa.Engine) -> None:
    import threading
    import time

    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with planning.planning_lock(engine):
            holding.set()
            time.sleep(0.3)
            order.append("first done")

    def second() -> None:
        holding.wait(5)
        with planning.planning_lock(engine):  # another engine would do the same: the lock is outside Python
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first done", "second in"]
