"""The console's store functions on SQLite and PostgreSQL: search, daily counts, the actions' conditions,
resend through the outbox row, and the tables other work adds later (feedback, send_time)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from console_seed import add_delivery, add_run, set_status, subscriber_row

from digest.models import SubscriberStatus
from digest.store import console
from digest.store import console_subscribers as subs
from digest.store.subscribers import add_subscriber
from digest.store.tables import delivery, feedback, run

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TODAY = NOW.date()


def people(engine: sa.Engine) -> dict[str, int]:
    made = {}
    for address, rules, cadence in [
        ("ada@example.org", ["diffusion OR video"], "daily"),
        ("bob_smith@example.org", ['author:"Yann LeCun"'], "weekly"),
        ("bob%x@example.org", ["agents"], "daily"),
        ("cy@lab.example.net", ["flow matching", "diffusion*"], "daily"),
    ]:
        sub = add_subscriber(engine, address, rules, now=NOW, status=SubscriberStatus.ACTIVE)
        made[address] = sub.id
        if cadence == "weekly":
            from digest.store.subscribers import set_cadence

            set_cadence(engine, sub.id, cadence, 0, NOW)  # type: ignore[arg-type]
    return made


def emails(page: subs.SearchPage) -> list[str]:
    return [s.email for s in page.items]


def test_search_filters_by_address_status_cadence_and_rule_word(engine: sa.Engine) -> None:
    ids = people(engine)
    set_status(engine, ids["cy@lab.example.net"], "bounced")
    assert emails(subs.search(engine, subs.SearchQuery(address="BOB"))) == [
        "bob%x@example.org",
        "bob_smith@example.org",
    ]
    # LIKE wildcards in the search text are literal characters
    assert emails(subs.search(engine, subs.SearchQuery(address="b_s"))) == ["bob_smith@example.org"]
    assert emails(subs.search(engine, subs.SearchQuery(address="%"))) == ["bob%x@example.org"]
    assert emails(subs.search(engine, subs.SearchQuery(status="bounced"))) == ["cy@lab.example.net"]
    assert emails(subs.search(engine, subs.SearchQuery(cadence="weekly"))) == ["bob_smith@example.org"]
    assert emails(subs.search(engine, subs.SearchQuery(rule_word="Diffusion"))) == [
        "ada@example.org",
        "cy@lab.example.net",
    ]
    both = subs.search(engine, subs.SearchQuery(rule_word="diffusion", status="active"))
    assert emails(both) == ["ada@example.org"] and both.items[0].rules == 1
    assert "bounced" in subs.statuses(engine)


def test_search_pages_fifty_at_a_time(engine: sa.Engine) -> None:
    rows = [subscriber_row(f"p{i:03d}@example.org", NOW) for i in range(120)]
    from digest.store.tables import subscriber

    with engine.begin() as conn:
        conn.execute(subscriber.insert(), rows)
    first = subs.search(engine, subs.SearchQuery())
    last = subs.search(engine, subs.SearchQuery(page=3))
    beyond = subs.search(engine, subs.SearchQuery(page=99))
    assert (first.total, first.pages, len(first.items)) == (120, 3, 50)
    assert emails(last)[0] == "p100@example.org" and len(last.items) == 20
    assert beyond.page == 3


def test_daily_counts_cover_thirty_days_with_zeros_and_bounces(engine: sa.Engine) -> None:
    ids = people(engine)
    today_run = add_run(engine, TODAY, NOW)
    old_run = add_run(engine, TODAY - timedelta(days=3), NOW)
    add_delivery(engine, today_run, ids["ada@example.org"], "sent", NOW)
    add_delivery(engine, today_run, ids["bob%x@example.org"], "failed", NOW, last_reply="550 no such user")
    add_delivery(engine, today_run, ids["cy@lab.example.net"], "skipped", NOW)
    add_delivery(engine, old_run, ids["ada@example.org"], "uncertain", NOW)
    _feedback(engine, ids["bob%x@example.org"], "hard", "550 no such user")
    _feedback(engine, ids["ada@example.org"], "complaint", "abuse report")  # a complaint is not a bounce
    days = console.daily_counts(engine, TODAY - timedelta(days=29), TODAY, UTC)
    assert len(days) == 30 and days[0].day == TODAY - timedelta(days=29)
    assert days[-1].counts == {"sent": 1, "failed": 1, "uncertain": 0, "bounced": 1}
    assert days[-4].counts == {"sent": 0, "failed": 0, "uncertain": 1, "bounced": 0}
    assert sum(d.total for d in days) == 4


def test_resend_goes_through_the_outbox_row_and_never_twice(engine: sa.Engine) -> None:
    ids = people(engine)
    assert subs.resend(engine, ids["ada@example.org"], TODAY, NOW, "x") is subs.Resend.NO_RUN
    run_id = add_run(engine, TODAY, NOW, status="done")
    assert subs.resend(engine, ids["ada@example.org"], TODAY, NOW, "x") is subs.Resend.NOT_PLANNED
    add_delivery(engine, run_id, ids["ada@example.org"], "sent", NOW)
    add_delivery(engine, run_id, ids["cy@lab.example.net"], "uncertain", NOW)
    failed = add_delivery(engine, run_id, ids["bob%x@example.org"], "failed", NOW, attempts=5)
    assert subs.resend(engine, ids["ada@example.org"], TODAY, NOW, "x") is subs.Resend.ALREADY
    assert subs.resend(engine, ids["cy@lab.example.net"], TODAY, NOW, "x") is subs.Resend.MAYBE_ARRIVED
    assert subs.resend(engine, ids["bob%x@example.org"], TODAY, NOW, "requeued by ops") is subs.Resend.QUEUED
    with engine.connect() as conn:
        row = conn.execute(sa.select(delivery).where(delivery.c.id == failed)).one()
        status = conn.execute(sa.select(run.c.status).where(run.c.id == run_id)).scalar()
        count = conn.execute(sa.select(sa.func.count()).select_from(delivery)).scalar()
    assert (row.state, row.attempts, row.last_reply) == ("pending", 0, "requeued by ops")
    assert status == "incomplete", "the retry job picks a finished run up again"
    assert count == 3, "the same row, never a second one"
    assert subs.resend(engine, ids["bob%x@example.org"], TODAY, NOW, "x") is subs.Resend.ALREADY


def test_reactivation_is_for_bounced_addresses_only(engine: sa.Engine) -> None:
    ids = people(engine)
    bounced, complained = ids["ada@example.org"], ids["cy@lab.example.net"]
    set_status(engine, bounced, "bounced")
    set_status(engine, complained, "complained")
    assert subs.change_status(engine, bounced, subs.Change.REACTIVATE, NOW)
    assert not subs.change_status(engine, complained, subs.Change.REACTIVATE, NOW)
    assert not subs.change_status(engine, ids["bob%x@example.org"], subs.Change.REACTIVATE, NOW)  # active
    record = subs.record(engine, complained)
    assert record is not None and record.status == "complained"
    assert subs.record(engine, bounced).status == "active"  # type: ignore[union-attr]
    assert subs.change_status(engine, bounced, subs.Change.PAUSE, NOW)
    assert not subs.change_status(engine, bounced, subs.Change.PAUSE, NOW)
    assert subs.change_status(engine, bounced, subs.Change.UNSUBSCRIBE, NOW)
    assert subs.record(engine, bounced).row["unsubscribed_at"] is not None  # type: ignore[union-attr]


def test_send_hours_group_everybody_on_the_default_until_send_times_exist(engine: sa.Engine) -> None:
    people(engine)
    assert console.active_by_send_hour(engine) == {None: 4}
    assert console.subscriber_counts_by_status(engine) == {"active": 4}


def _feedback(engine: sa.Engine, subscriber_id: int, kind: str, reason: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            feedback.insert().values(
                received_at=NOW,
                source="webhook",
                kind=kind,
                subscriber_id=subscriber_id,
                reason=reason,
                action="recorded",
                raw=b"the message",
            )
        )


def test_feedback_rows_are_one_subscribers_bounces_newest_first_without_the_raw_message(
    engine: sa.Engine,
) -> None:
    ids = people(engine)
    assert console.feedback_rows(engine) == []
    _feedback(engine, ids["ada@example.org"], "hard", "550 5.1.1")
    rows = console.feedback_rows(engine, ids["ada@example.org"])
    assert [(r["kind"], r["reason"]) for r in rows] == [("hard", "550 5.1.1")]
    assert "raw" not in rows[0]
    assert console.feedback_rows(engine, ids["cy@lab.example.net"]) == []
    days = console.daily_counts(engine, TODAY - timedelta(days=1), TODAY, UTC)
    assert days[-1].counts["bounced"] == 1


def test_source_health_reads_the_last_fetch_and_papers_per_day(engine: sa.Engine) -> None:
    from digest.models import Paper
    from digest.store.papers import upsert_papers

    upsert_papers(engine, [Paper(id="2603.00001", title="t", summary="s", daily_date=TODAY)], NOW)
    health = console.source_health(engine, TODAY - timedelta(days=2), TODAY)
    assert health.last_good_fetch == NOW
    assert health.papers_per_day == [
        (TODAY, 1),
        (TODAY - timedelta(days=1), 0),
        (TODAY - timedelta(days=2), 0),
    ]


def test_recent_runs_carry_their_counts(engine: sa.Engine) -> None:
    ids = people(engine)
    run_id = add_run(engine, TODAY, NOW, status="running")
    add_delivery(engine, run_id, ids["ada@example.org"], "sent", NOW)
    add_delivery(engine, run_id, ids["cy@lab.example.net"], "retry", NOW)
    (only,) = console.recent_runs(engine, date(2026, 3, 1))
    assert only.status == "running" and only.counts == {"sent": 1, "retry": 1}
