"""`digest run` end to end: real HTTP (captured HF days), a real SMTP server with faults, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_helpers import DAY, delivered, delivery_states, mails_to, make_config, subscribe
from smtp_server import DROP, FaultySmtpServer

from digest.mailer import SmtpPool
from digest.pipeline import RunOptions, run_digest
from digest.store import db
from digest.store.tables import alert, delivery, run, subscriber

FAST = RunOptions(retry_base_s=0.05)


async def run_once(
    config: Any, engine: sa.Engine, server: FaultySmtpServer, day: Any = DAY, **kw: Any
) -> Any:
    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        return await run_digest(config, engine, day, pool, options=kw.pop("options", FAST), **kw)


@pytest.fixture
def server(smtp_server: Any) -> FaultySmtpServer:
    return smtp_server()  # type: ignore[no-any-return]


async def test_each_subscriber_gets_one_digest_of_their_papers_and_a_rerun_sends_nothing(
    tmp_path: Path, hf: Any, server: FaultySmtpServer, db_url: str
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    subscribe(engine, "bob@example.org", "zebrafish")  # nothing matches: skipped, no mail
    subscribe(engine, "cy@example.org", "title:video", "org:Google")

    report = await run_once(config, engine, server)

    assert report.status == "done", report
    assert report.papers_fetched == 17
    assert (report.sent, report.skipped_empty, report.failed, report.uncertain) == (2, 1, 0, 0)
    ada = mails_to(server.messages, "ada@example.org")
    assert len(ada) == 1 and mails_to(server.messages, "bob@example.org") == []
    assert "2608.19880" in delivered(engine, "ada@example.org")  # EnvHarness: "LLM agents"
    assert ada[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "2608.19880" in delivered(engine, "cy@example.org")  # Google

    again = await run_once(config, engine, server)
    assert again.status == "done"
    assert len(server.messages) == 2, "a rerun of a finished date sends nothing"
    engine.dispose()


async def test_it_never_sends_a_paper_twice_across_days(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, source={"lookback_days": 3})
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    await run_once(config, engine, server, DAY)
    first = delivered(engine, "ada@example.org")
    # The next day's window still holds 2026-08-21: nothing of it may come again.
    report = await run_once(config, engine, server, DAY + timedelta(days=1))
    assert report.status == "done"
    assert report.sent == 0 and report.skipped_empty == 1
    assert delivered(engine, "ada@example.org") == first
    assert len(mails_to(server.messages, "ada@example.org")) == 1


async def test_a_missed_day_is_caught_up_by_the_next_run(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, source={"lookback_days": 3})
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    report = await run_once(config, engine, server, DAY + timedelta(days=2))  # 08-21 was never run
    assert report.sent == 1
    assert "2608.19880" in delivered(engine, "ada@example.org")


async def test_a_temporary_failure_is_retried_within_the_run(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("RCPT", "451 4.3.0 try again later", to="ada@example.org")
    report = await run_once(config, engine, server)
    assert report.status == "done" and report.sent == 1
    assert len(mails_to(server.messages, "ada@example.org")) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(delivery.c.attempts)).scalar() == 2


async def test_a_permanent_failure_is_final_and_repeated_ones_bounce_the_address(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, smtp={"hard_bounce_limit": 1})
    engine = db.open_database(config.database_url)
    subscribe(engine, "gone@example.org", "agent*")
    subscribe(engine, "ada@example.org", "agent*")
    server.script("RCPT", "550 5.1.1 no such user", to="gone@example.org")
    report = await run_once(config, engine, server)
    assert report.status == "done"  # failed is a final state
    assert report.failed == 1 and report.sent == 1, "one bad address never stops the run"
    assert delivery_states(engine)["gone@example.org"] == ["failed"]
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(subscriber.c.status).where(subscriber.c.email == "gone@example.org")
        ).scalar()
    assert status == "bounced"
    assert delivered(engine, "gone@example.org") == []


async def test_552_is_treated_as_temporary(tmp_path: Path, hf: Any, server: FaultySmtpServer) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("DATA", "552 5.3.4 mailbox full")
    report = await run_once(config, engine, server)
    assert report.sent == 1 and report.failed == 0


async def test_a_retry_left_at_the_end_of_a_run_is_sent_by_a_later_run(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("RCPT", "451 4.3.0 later", to="ada@example.org")
    no_wait = RunOptions(retry_base_s=60, in_run_retry_window=timedelta(0))
    first = await run_once(config, engine, server, options=no_wait)
    assert first.status == "incomplete" and first.sent == 0
    later = datetime.now(UTC) + timedelta(minutes=5)  # past the retry's backoff
    second = await run_once(
        config, engine, server, DAY + timedelta(days=1), options=FAST, clock=lambda: later
    )
    assert second.status == "done"
    assert len(mails_to(server.messages, "ada@example.org")) == 1
    with engine.connect() as conn:
        states = [s for (s,) in conn.execute(sa.select(delivery.c.state).order_by(delivery.c.id))]
    assert states[0] == "sent"


async def test_a_drop_after_data_is_uncertain_and_never_resent(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("DATA", DROP)
    report = await run_once(config, engine, server)
    assert report.uncertain == 1 and report.status == "done"
    assert any("uncertain" in p for p in report.problems)
    await run_once(config, engine, server)
    assert delivery_states(engine)["ada@example.org"] == ["uncertain"]
    assert len(mails_to(server.messages, "ada@example.org")) == 1  # the one that arrived before the drop


async def test_a_broken_source_stops_the_run_mails_no_digest_and_alerts_the_admin_once(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, source={"lookback_days": 0})
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    hf.add_day(DAY, [{"not": "a paper"}] * 5)  # the site changed: every item fails the schema
    hf.add_html(DAY, "<html><body>new design</body></html>")
    report = await run_once(config, engine, server)
    assert report.status == "failed"
    assert "source" in (report.error or "")
    assert mails_to(server.messages, "ada@example.org") == []
    alerts = mails_to(server.messages, "ops@example.org")
    assert len(alerts) == 1
    second = await run_once(config, engine, server)
    assert second.status == "failed"
    assert len(mails_to(server.messages, "ops@example.org")) == 1, "at most one alert per problem per day"
    with engine.connect() as conn:
        assert conn.execute(sa.select(run.c.status)).scalar() == "failed"
        assert conn.execute(sa.select(sa.func.count()).select_from(alert)).scalar() == 1


async def test_weekly_subscribers_get_mail_only_on_their_weekday(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    subscribe(engine, "weekly@example.org", "agent*", cadence="weekly", weekday=(DAY.weekday() + 1) % 7)
    subscribe(engine, "daily@example.org", "agent*")
    await run_once(config, engine, server, DAY)
    assert mails_to(server.messages, "weekly@example.org") == []
    await run_once(config, engine, server, DAY + timedelta(days=1))
    assert len(mails_to(server.messages, "weekly@example.org")) == 1  # the week's papers, on its day
    assert len(mails_to(server.messages, "daily@example.org")) == 1


async def test_an_unsubscribe_between_planning_and_sending_takes_effect(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    from pipeline_helpers import NOW

    from digest.models import SubscriberStatus
    from digest.planning import fetch_and_store, plan_run
    from digest.store import planning, runs
    from digest.store.subscribers import set_status

    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    sid = subscribe(engine, "ada@example.org", "agent*")
    claim = runs.claim_run(engine, DAY, NOW, owner="elsewhere:1")
    await fetch_and_store(config, engine, DAY, now=NOW)
    planning.write_plan(engine, claim.id, plan_run(config, engine, DAY), NOW)
    set_status(engine, sid, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    report = await run_once(config, engine, server)  # takes over the dead owner's planned run
    assert report.status == "done"
    assert mails_to(server.messages, "ada@example.org") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(delivery.c.state == "sent")).scalar() == 0


async def test_digests_planned_by_a_run_that_failed_are_sent_by_the_next_run(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, source={"lookback_days": 0})
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    server.script("MAIL", "550 5.7.1 sender refused")  # a whole-run problem, after planning
    first = await run_once(config, engine, server, DAY)
    assert first.status == "failed" and "sender" in (first.error or "")
    assert delivery_states(engine)["ada@example.org"] == ["pending"]
    second = await run_once(config, engine, server, DAY + timedelta(days=1))
    assert second.status == "done"
    assert len(mails_to(server.messages, "ada@example.org")) == 1
    assert "2608.19880" in delivered(engine, "ada@example.org")
    assert delivery_states(engine)["ada@example.org"].count("sent") == 1


async def test_a_subscriber_with_an_unreadable_stored_rule_does_not_stop_the_run(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    from digest.store.tables import rule

    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port)
    engine = db.open_database(config.database_url)
    broken = subscribe(engine, "old@example.org", "agent*")
    subscribe(engine, "ada@example.org", "agent*")
    with engine.begin() as conn:  # e.g. a rule saved by a laxer older version
        conn.execute(rule.update().where(rule.c.subscriber_id == broken).values(query="title:(agent"))
    report = await run_once(config, engine, server)
    assert report.status == "done"
    assert len(mails_to(server.messages, "ada@example.org")) == 1
    assert mails_to(server.messages, "old@example.org") == []


async def test_with_skip_empty_off_a_subscriber_with_nothing_new_gets_an_empty_digest(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, schedule={"skip_empty": False})
    engine = db.open_database(config.database_url)
    subscribe(engine, "quiet@example.org", "zebrafish")
    report = await run_once(config, engine, server)
    assert report.status == "done" and report.sent == 1
    (mail,) = mails_to(server.messages, "quiet@example.org")
    assert (
        "0 new papers" in str(mail["Subject"])
        or "no new papers" in mail.get_body(("plain",)).get_content().lower()
    )


async def test_a_weekly_digest_fetches_the_whole_week(
    tmp_path: Path, hf: Any, server: FaultySmtpServer
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, source={"lookback_days": 1})
    engine = db.open_database(config.database_url)
    subscribe(
        engine, "weekly@example.org", "agent*", cadence="weekly", weekday=(DAY + timedelta(days=5)).weekday()
    )
    await run_once(
        config, engine, server, DAY + timedelta(days=5)
    )  # 2026-08-21 is 5 days back, beyond lookback 1
    asked = {
        r.query.get("date", [""])[0] if isinstance(r.query, dict) else ""
        for r in hf.requests_to("/api/daily_papers")
    }
    assert DAY.isoformat() in str(asked) or DAY.isoformat() in str(hf.requests_to("/api/daily_papers"))
    assert len(mails_to(server.messages, "weekly@example.org")) == 1


def test_a_run_held_by_another_live_process_keeps_its_heartbeat_and_its_result(engine: sa.Engine) -> None:
    from pipeline_helpers import NOW

    from digest.store import runs

    claim = runs.claim_run(engine, DAY, NOW, owner="other-host:1")
    later = NOW + timedelta(minutes=1)
    runs.heartbeat(engine, claim.id, later, owner="me:2")  # not ours: no effect
    assert not runs.finish_run(engine, claim.id, "done", later, owner="me:2")
    with engine.connect() as conn:
        row = conn.execute(sa.select(run.c.status, run.c.heartbeat_at)).one()
    assert row.status == "running"
    assert runs.finish_run(engine, claim.id, "done", later, owner="other-host:1")
