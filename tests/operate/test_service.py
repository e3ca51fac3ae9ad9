"""The serve-side run: catch-up, SMTP down, a broken source, graceful stop and cancellation, the web's mailer.

Real parts: the captured HF day on a loopback HTTP server, a fault-injecting aiosmtpd server, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_helpers import DAY, delivery_states, mails_to, make_config, subscribe
from smtp_server import HANG, FaultySmtpServer, received_by

from digest.config import Config
from digest.errors import DeliveryError
from digest.scheduler import missed_run_date
from digest.service import DigestService, LazyMailer
from digest.store import db
from digest.store.tables import alert, run
from digest.web.health import health

AFTER_FIRE = datetime(2026, 8, 21, 9, 30, tzinfo=UTC)  # the 07:00 UTC run of DAY was missed


def clock() -> datetime:
    return AFTER_FIRE


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alerts(engine: sa.Engine) -> list[tuple[str, Any]]:
    with engine.connect() as conn:
        return [(r.problem, r.sent_at) for r in conn.execute(sa.select(alert))]


def run_status(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(run.c.status).where(run.c.run_date == DAY)).scalar()


async def wait_until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def setup(
    tmp_path: Path, hf: Any, port: int, db_url: str | None = None, **sections: Any
) -> tuple[Config, sa.Engine]:
    config = make_config(
        tmp_path,
        hf_url=hf.base_url,
        smtp_port=port,
        db_url=db_url,
        schedule={"cron": "0 7 * * *"},
        **sections,
    )
    return config, db.open_database(config.database_url)


async def test_a_missed_run_is_caught_up_once_and_then_is_no_longer_due(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port, db_url)
    subscribe(engine, "ada@example.org", "agent*")
    subscribe(engine, "cy@example.org", "org:Google")

    assert missed_run_date(config, engine, AFTER_FIRE) == DAY
    report = await DigestService(config, engine, clock=clock).run(DAY)

    assert report is not None and report.status == "done", report
    assert received_by(server) == {"ada@example.org": 1, "cy@example.org": 1}
    assert missed_run_date(config, engine, AFTER_FIRE) is None, "a finished run is never caught up again"
    again = await DigestService(config, engine, clock=clock).run(DAY)  # e.g. a second process's catch-up
    assert again is not None and again.status == "done"
    assert len(server.messages) == 2
    engine.dispose()


async def test_smtp_down_fails_the_run_alerts_once_and_the_next_start_catches_up(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    config, engine = setup(tmp_path, hf, closed_port())
    subscribe(engine, "ada@example.org", "agent*")

    first = await DigestService(config, engine, clock=clock).run(DAY)
    second = await DigestService(config, engine, clock=clock).run(DAY)

    assert first is not None and first.status == "failed" and "SMTP" in (first.error or "")
    assert second is not None and second.status == "failed"
    assert run_status(engine) == "failed"
    assert [p for p, _ in alerts(engine)] == ["smtp"], "one alert per problem per day"
    status = health(engine, AFTER_FIRE)
    assert status["status"] == "alert" and status["last_run"]["status"] == "failed"

    # SMTP is back: the next start finds the day not done and sends it.
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port)
    assert missed_run_date(config, engine, AFTER_FIRE) == DAY
    report = await DigestService(config, engine, clock=clock).run(DAY)
    assert report is not None and report.status == "done"
    assert received_by(server) == {"ada@example.org": 1}
    engine.dispose()


async def test_a_broken_source_mails_the_admin_once_a_day_and_sends_no_digest(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    hf.add_day(DAY, [{"paper": {"title": "the site changed its format"}}])
    config, engine = setup(tmp_path, hf, server.port)
    subscribe(engine, "ada@example.org", "agent*")

    for _ in range(3):  # the scheduled run, then two restarts the same day
        report = await DigestService(config, engine, clock=clock).run(DAY)
        assert report is not None and report.status == "failed"

    admin = mails_to(server.messages, "ops@example.org")
    assert len(admin) == 1, "at most one alert per problem per day"
    assert "source" in str(admin[0]["Subject"])
    assert "papers" in admin[0].get_body(preferencelist=("plain",)).get_content().lower()  # type: ignore[union-attr]
    assert mails_to(server.messages, "ada@example.org") == [], "no empty or partial digest"
    assert [(p, sent is not None) for p, sent in alerts(engine)] == [("source", True)]
    engine.dispose()


async def test_a_graceful_stop_hands_over_no_new_message_and_a_restart_sends_the_rest_once(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port, db_url, smtp={"rate_per_s": 40})
    emails = [f"r{i:02d}@example.org" for i in range(30)]
    for e in emails:
        subscribe(engine, e, "agent*")
    service = DigestService(config, engine, clock=clock)
    task = asyncio.ensure_future(service.run(DAY))
    await wait_until(lambda: len(server.messages) >= 5)
    started = time.monotonic()
    await service.drain(grace_s=5)
    assert time.monotonic() - started < 2, "the messages in flight finish quickly"
    report = await task

    assert report is not None and report.status == "interrupted", report
    states = delivery_states(engine)
    flat = [s for v in states.values() for s in v]
    assert "sending" not in flat and "uncertain" not in flat
    assert flat.count("sent") == len(server.messages) < 30, "every message handed over was recorded"
    assert run_status(engine) == "interrupted"

    restarted = await DigestService(config, engine, clock=clock).run(DAY)
    assert restarted is not None and restarted.status == "done"
    assert received_by(server) == dict.fromkeys(emails, 1)
    engine.dispose()


async def test_a_run_cancelled_mid_message_marks_only_that_message_uncertain(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port, smtp={"rate_per_s": 50, "timeout_s": 30})
    emails = [f"r{i:02d}@example.org" for i in range(20)]
    for e in emails:
        subscribe(engine, e, "agent*")
    server.script("DATA", HANG, to="r03@example.org")  # the server takes the message and never answers
    service = DigestService(config, engine, clock=clock)
    task = asyncio.ensure_future(service.run(DAY))
    await wait_until(lambda: "r03@example.org" in received_by(server) and len(server.messages) >= 6)
    await service.drain(grace_s=0.3)  # r03 cannot finish: the run is cancelled
    assert await task is None

    states = delivery_states(engine)
    assert states["r03@example.org"] == ["uncertain"]
    flat = [s for v in states.values() for s in v]
    assert "sending" not in flat
    assert flat.count("uncertain") <= config.smtp.pool_size
    assert run_status(engine) == "interrupted"

    restarted = await DigestService(config, engine, clock=clock).run(DAY)
    assert restarted is not None and restarted.status == "done"
    got = received_by(server)
    final = delivery_states(engine)
    for e in emails:
        assert got.get(e) == 1, f"{e}: {final[e]}"  # uncertain ones are not resent; the rest arrive once
        assert final[e] in (["sent"], ["uncertain"])
    engine.dispose()


async def test_the_web_mailer_keeps_one_connection_and_reopens_after_a_failure(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, _ = setup(tmp_path, hf, server.port)
    mailer = LazyMailer(config)
    for i in range(3):
        outcome = await mailer.send(
            "digest@example.org", f"n{i}@example.org", b"Subject: hi\r\n\r\nhello\r\n"
        )
        assert outcome.status == "sent"
    assert server.connections == 1
    await mailer.aclose()

    down, _ = setup(tmp_path, hf, closed_port())
    broken = LazyMailer(down)
    for _ in range(2):  # not cached as broken: each mail tries again
        with pytest.raises(DeliveryError):
            await broken.send("digest@example.org", "n@example.org", b"Subject: hi\r\n\r\nhello\r\n")
    await broken.aclose()
