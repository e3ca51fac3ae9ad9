"""Send-time slots and the source refresh with `[workers] enabled`: `serve` only queues small jobs (a slot's
quarter hour, never its audience); real `digest worker` processes on PostgreSQL plan, deliver and fetch.

The worker processes run on the real clock while the slots here are in August 2026: a slot's plan job
recomputes its audience from the slot time it carries, so the result does not depend on when it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from operate_helpers import FIXTURE_DAY, serve_day, today_utc
from pipeline_helpers import local_dates, subscribe
from smtp_server import received_by
from worker_helpers import start_worker, stop, worker_config

from digest import pipeline
from digest.config_load import load_config
from digest.demo.snapshot_server import API_PATH
from digest.jobs import PLAN_TASK, REFRESH_TASK, PlanDeferrer
from digest.scheduler import REFRESH_JOB_ID
from digest.service import DigestService, make_scheduler
from digest.store.papers import load_papers

pytestmark = pytest.mark.postgres

DAY = FIXTURE_DAY  # 2026-08-21: the captured papers ("agent*" matches several)
RULE = "agent*"
READERS = ("cron@example.org", "tokyo@example.org", "berlin@example.org", "late@example.org")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def jobs(engine: sa.Engine, task: str) -> list[dict[str, Any]]:
    query = sa.text("SELECT id, status, args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query, {"t": task}).mappings()]


def queue_idle(engine: sa.Engine) -> Callable[[], bool]:
    def check() -> bool:
        query = sa.text("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")
        with engine.connect() as conn:
            return conn.execute(query).scalar() == 0

    return check


async def until(check: Callable[[], bool], what: str, logs: list[Path], timeout: float = 60) -> None:
    """Wait (without blocking the loop) until ``check()``; the workers' logs in the error otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"{what}: not within {timeout} s\n{tails}")


def readers_mailed(server: Any) -> dict[str, int]:
    """Digests received per reader (admin alerts about the source left out)."""
    return {k: v for k, v in received_by(server).items() if k in READERS}


async def test_a_slot_with_workers_plans_and_delivers_exactly_its_due_readers_once(
    tmp_path: Path, hf: Any, smtp_server: Any, postgres_url: str
) -> None:
    server = smtp_server()
    path = worker_config(tmp_path / "a", hf_url=hf.base_url, smtp_port=server.port, db_url=postgres_url)
    config = load_config(path)
    engine = pipeline.open_store(config)
    subscribe(engine, "cron@example.org", RULE)  # follows the cron: never a slot's
    subscribe(engine, "tokyo@example.org", RULE, send_time="07:00", timezone="Asia/Tokyo")
    subscribe(engine, "berlin@example.org", RULE, send_time="08:00", timezone="Europe/Berlin")
    subscribe(engine, "late@example.org", RULE, send_time="23:45", timezone="Asia/Tokyo")
    await pipeline.fetch_and_store(config, engine, DAY)  # the refresh job's work: a slot never fetches
    fetches = len(hf.requests_to(API_PATH))
    # Two `serve` processes, each with its own deferrer, whose clocks fire the same slot a moment apart.
    clocks = [
        Clock(datetime(2026, 8, 20, 22, 0, 0, 300_000, tzinfo=UTC)),
        Clock(datetime(2026, 8, 20, 22, 0, 2, tzinfo=UTC)),
    ]
    deferrers = [PlanDeferrer(config, engine) for _ in clocks]
    services = [
        DigestService(config, engine, clock=c, workers=d) for c, d in zip(clocks, deferrers, strict=True)
    ]
    logs = [tmp_path / "worker.log"]
    workers = []
    try:
        for service in services:  # 07:00 of the 21st in Tokyo; 00:00 in Berlin
            await service.slot()
        await services[0].slot()  # the same process, the same slot again
        queued = jobs(engine, PLAN_TASK)
        assert len(queued) == 1, queued  # deferred three times, queued once
        assert queued[0]["args"] == {"run_date": "2026-08-21", "slot_at": "2026-08-20T22:00:00+00:00"}

        workers = [start_worker(path, logs[0])]
        await until(lambda: readers_mailed(server) != {} and queue_idle(engine)(), "Tokyo's slot ran", logs)
        assert readers_mailed(server) == {"tokyo@example.org": 1}

        clocks[1].now = datetime(2026, 8, 21, 6, 0, 1, tzinfo=UTC)  # 08:00 in Berlin, 15:00 in Tokyo
        await services[1].slot()
        await until(lambda: "berlin@example.org" in readers_mailed(server), "Berlin's slot ran", logs)
        await until(queue_idle(engine), "the queue emptied", logs)
        assert readers_mailed(server) == {"tokyo@example.org": 1, "berlin@example.org": 1}
        assert len(hf.requests_to(API_PATH)) == fetches  # the slots planned from the stored papers

        # The same slot queued again after it ran (a retry, a late second process): nobody is left.
        await deferrers[0](DAY, datetime(2026, 8, 21, 6, 0, tzinfo=UTC))
        # The cron's plan job (it fetches) plans its followers and leaves the readers with their own hour
        # for their slots; the workers' real clock is months past the 21st, when nobody's hour fell on it.
        await services[0].run(DAY)
        await until(lambda: "cron@example.org" in readers_mailed(server), "the cron's plan ran", logs)
        await until(queue_idle(engine), "the queue emptied", logs)
        assert "late@example.org" not in readers_mailed(server), "23:45 in Tokyo has not come"

        clocks[0].now = datetime(2026, 8, 21, 14, 45, tzinfo=UTC)  # 23:45 in Tokyo
        await services[0].slot()
        await until(lambda: "late@example.org" in readers_mailed(server), "the late slot ran", logs)
        await until(queue_idle(engine), "the queue emptied", logs)
    finally:
        codes = stop(workers)
        for deferrer in deferrers:
            await deferrer.aclose()
    assert readers_mailed(server) == dict.fromkeys(READERS, 1)
    assert local_dates(engine) == {reader: [DAY] for reader in READERS}
    plans = jobs(engine, PLAN_TASK)
    assert [j["status"] for j in plans] == ["succeeded"] * 5
    assert [j["args"].get("slot_at") for j in plans] == [
        "2026-08-20T22:00:00+00:00",
        "2026-08-21T06:00:00+00:00",
        "2026-08-21T06:00:00+00:00",  # the re-deferral: ran, planned nobody
        None,  # the cron's
        "2026-08-21T14:45:00+00:00",
    ]
    assert len(hf.requests_to(API_PATH)) > fetches  # only the cron's plan job fetched
    assert codes == [0]
    engine.dispose()


async def test_serve_with_workers_queues_the_refresh_job_and_a_worker_fetches(
    tmp_path: Path, hf: Any, smtp_server: Any, postgres_url: str
) -> None:
    day = today_utc()  # the worker refreshes on its own (real) clock
    serve_day(hf, day)
    server = smtp_server()
    path = worker_config(tmp_path / "a", hf_url=hf.base_url, smtp_port=server.port, db_url=postgres_url)
    config = load_config(path)
    engine = pipeline.open_store(config)
    deferrers = [PlanDeferrer(config, engine) for _ in range(2)]  # two `serve` processes
    services = [DigestService(config, engine, workers=d) for d in deferrers]
    logs = [tmp_path / "worker.log"]
    worker = None
    try:
        # What serve's [source] refresh cron calls: the scheduler's own job function.
        for service in services:
            await make_scheduler(service).get_job(REFRESH_JOB_ID).func()
        assert hf.requests_to(API_PATH) == []  # serve fetched nothing itself
        assert [j["status"] for j in jobs(engine, REFRESH_TASK)] == ["todo"]  # one waiting at a time
        assert load_papers(engine, day, day) == []

        worker = start_worker(path, logs[0])
        await until(lambda: len(load_papers(engine, day, day)) == 17, "the worker stored the papers", logs)
        await until(queue_idle(engine), "the refresh job ended", logs)
    finally:
        codes = stop([worker] if worker else [])
        for deferrer in deferrers:
            await deferrer.aclose()
    assert [j["status"] for j in jobs(engine, REFRESH_TASK)] == ["succeeded"]
    assert str(day) in {r.query["date"] for r in hf.requests_to(API_PATH)}
    assert jobs(engine, PLAN_TASK) == []  # a refresh is no digest run
    assert received_by(server).keys() <= {"ops@example.org"}  # no digest; at most an admin alert
    assert codes == [0]
    engine.dispose()
