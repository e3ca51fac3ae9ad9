"""The same-day retry in `digest serve`: today's unfinished run is run again by the interval job.

Real parts: the captured HF day on a loopback HTTP server, the fault-injecting aiosmtpd server (stopped,
then started again on the same port), the real APScheduler wiring of ``serve`` (``make_scheduler``) with
a short interval, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from pipeline_helpers import DAY, delivery_states, make_config, subscribe
from smtp_server import FaultySmtpServer, received_by

from digest.config import Config, SubscriberEntry
from digest.pipeline import RunOptions
from digest.scheduler import RETRY_JOB_ID
from digest.service import DigestService, make_scheduler, sync_subscribers
from digest.store import db
from digest.store.tables import run

AFTER_FIRE = datetime(2026, 8, 21, 9, 30, tzinfo=UTC)  # today's 07:00 UTC fire has passed
TICK = timedelta(seconds=0.2)
ADMIN = "ops@example.org"


def moving_clock() -> Callable[[], datetime]:
    """AFTER_FIRE, advancing with real time (retry rows become due as the test waits)."""
    start = time.monotonic()
    return lambda: AFTER_FIRE + timedelta(seconds=time.monotonic() - start)


@pytest.fixture
def retry_logs() -> Iterator[list[logging.LogRecord]]:
    """The 'retrying ...' records of digest.scheduler (own handler: independent of log configuration)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("retrying"):
                records.append(record)

    logger = logging.getLogger("digest.scheduler")
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def setup(tmp_path: Path, hf: Any, port: int, db_url: str | None = None) -> tuple[Config, sa.Engine]:
    config = make_config(
        tmp_path, hf_url=hf.base_url, smtp_port=port, db_url=db_url, schedule={"cron": "0 7 * * *"}
    )
    return config, db.open_database(config.database_url)


def run_row(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(run).where(run.c.run_date == DAY)).mappings().one())


def digests(server: FaultySmtpServer) -> dict[str, int]:
    """Messages received per subscriber (admin alerts left out)."""
    return {k: v for k, v in received_by(server).items() if k != ADMIN}


async def wait_until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def reserve_port() -> socket.socket:
    """A bound, not listening socket: connections to its port are refused (SMTP is down) and no other
    process can take the port until the server comes back on it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def smtp_back_on(reserved: socket.socket) -> FaultySmtpServer:
    """Start the SMTP server on the reserved port (the operator fixed the relay)."""
    port = reserved.getsockname()[1]
    reserved.close()
    server = FaultySmtpServer()
    server._controller.port = port  # the sink binds port 0 by default; here it must be the same port
    return server.start()


async def test_a_run_failed_with_smtp_down_is_retried_when_smtp_is_back_and_sends_each_digest_once(
    tmp_path: Path, hf: Any, db_url: str, retry_logs: list[logging.LogRecord]
) -> None:
    reserved = reserve_port()
    config, engine = setup(tmp_path, hf, reserved.getsockname()[1], db_url)
    subscribe(engine, "ada@example.org", "agent*")
    subscribe(engine, "cy@example.org", "org:Google")
    service = DigestService(config, engine, clock=moving_clock())

    first = await service.run(DAY)  # the 07:00 run: SMTP is down
    assert first is not None and first.status == "failed", first
    scheduler = make_scheduler(service, retry_every=TICK)
    scheduler.start()
    server: FaultySmtpServer | None = None
    try:
        await wait_until(lambda: len(retry_logs) >= 1 and not service.busy())
        assert run_row(engine)["status"] == "failed", "still down: the retry fails again, sends nothing"
        server = smtp_back_on(reserved)
        await wait_until(lambda: run_row(engine)["status"] == "done")
        retried = len(retry_logs)
        await asyncio.sleep(5 * TICK.total_seconds())  # more ticks: the done run is left alone
        assert len(retry_logs) == retried
        assert digests(server) == {"ada@example.org": 1, "cy@example.org": 1}
    finally:
        scheduler.shutdown(wait=False)
        await service.drain(5)
        reserved.close()
        if server is not None:
            server.stop()
    assert retry_logs[0].getMessage() == f"retrying the failed run for {DAY}"
    assert retry_logs[0].__dict__["previous_status"] == "failed"
    assert [s for v in delivery_states(engine).values() for s in v] == ["sent", "sent"]
    engine.dispose()


async def test_a_done_run_is_never_retried(
    tmp_path: Path, hf: Any, smtp_server: Any, retry_logs: list[logging.LogRecord]
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port)
    subscribe(engine, "ada@example.org", "agent*")
    service = DigestService(config, engine, clock=moving_clock())
    report = await service.run(DAY)
    assert report is not None and report.status == "done"
    before = run_row(engine)

    ticks: list[JobExecutionEvent] = []
    scheduler = make_scheduler(service, retry_every=timedelta(seconds=0.05))
    scheduler.add_listener(
        lambda e: ticks.append(e) if e.job_id == RETRY_JOB_ID else None, EVENT_JOB_EXECUTED
    )
    scheduler.start()
    try:
        await wait_until(lambda: len(ticks) >= 8)
    finally:
        scheduler.shutdown(wait=False)
        await service.drain(5)

    assert retry_logs == []
    assert len(service.reports) == 1, "no second run was started"
    assert run_row(engine) == before, "the run row was not touched"
    assert received_by(server) == {"ada@example.org": 1}
    engine.dispose()


async def test_an_incomplete_run_is_completed_by_the_retry_job(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str, retry_logs: list[logging.LogRecord]
) -> None:
    server: FaultySmtpServer = smtp_server()
    server.script("RCPT", "451 4.3.0 mailbox busy, try later", to="bob@example.org")
    config, engine = setup(tmp_path, hf, server.port, db_url)
    subscribe(engine, "ada@example.org", "agent*")
    subscribe(engine, "bob@example.org", "agent*")
    # The run does not wait for the retry itself (no in-run window): it ends incomplete at once.
    options = RunOptions(in_run_retry_window=timedelta(0), retry_base_s=0.5)
    service = DigestService(config, engine, clock=moving_clock(), options=options)

    first = await service.run(DAY)
    assert first is not None and first.status == "incomplete", first
    assert delivery_states(engine)["bob@example.org"] == ["retry"]
    assert digests(server) == {"ada@example.org": 1}

    scheduler = make_scheduler(service, retry_every=TICK)
    scheduler.start()
    try:
        await wait_until(lambda: run_row(engine)["status"] == "done")
        await asyncio.sleep(3 * TICK.total_seconds())
    finally:
        scheduler.shutdown(wait=False)
        await service.drain(5)

    assert retry_logs and {r.__dict__["previous_status"] for r in retry_logs} == {"incomplete"}
    assert digests(server) == {"ada@example.org": 1, "bob@example.org": 1}
    assert delivery_states(engine) == {"ada@example.org": ["sent"], "bob@example.org": ["sent"]}
    assert [r.status for r in service.reports][-1] == "done"
    engine.dispose()


async def test_a_config_sync_conflict_is_logged_and_the_run_still_sends(
    tmp_path: Path, hf: Any, smtp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server: FaultySmtpServer = smtp_server()
    config, engine = setup(tmp_path, hf, server.port)
    config = config.model_copy(
        update={"subscribers": [SubscriberEntry(email="new@example.org", rules=["agent*"])]}
    )
    subscribe(engine, "ada@example.org", "agent*")
    # The database refuses the config subscriber's insert with a constraint error, as when another
    # process inserted the same address between the sync's read and its insert.
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER conflict BEFORE INSERT ON subscriber WHEN NEW.email = 'new@example.org' "
            "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: subscriber.email'); END"
        )
    logger = logging.getLogger("digest.server")
    handler = caplog.handler
    logger.addHandler(handler)  # seen even when the digest logger does not propagate
    try:
        report = await DigestService(config, engine, clock=moving_clock()).run(DAY)
    finally:
        logger.removeHandler(handler)

    assert report is not None and report.status == "done", report
    assert received_by(server) == {"ada@example.org": 1}
    sync_subscribers(config, engine)  # serve's start: the same conflict does not stop the process either
    assert any(
        "could not sync the config subscribers" in r.getMessage() and "UNIQUE" in r.getMessage()
        for r in caplog.records
    )
    engine.dispose()
