"""``serve`` fetches the source in its own job on ``[source] refresh`` (hourly by default), apart from the
digest runs: a send never waits for Hugging Face."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from operate_helpers import start_frozen_until
from pipeline_helpers import make_config

from digest.demo.snapshot_server import API_PATH, SnapshotServer
from digest.errors import ConfigError
from digest.scheduler import JOB_ID, REFRESH_JOB_ID
from digest.service import DigestService, make_scheduler
from digest.store.papers import load_papers


def test_the_refresh_job_is_hourly_by_default_and_follows_the_config(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    start = datetime(2026, 8, 21, 6, 10, tzinfo=UTC)
    hourly = make_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=9)
    assert hourly.source.refresh == "0 * * * *"
    custom = make_config(
        tmp_path, hf_url="http://127.0.0.1:9", smtp_port=9, source={"refresh": "*/20 * * * *"}
    )
    for config, step in ((hourly, timedelta(hours=1)), (custom, timedelta(minutes=20))):
        scheduler = make_scheduler(DigestService(config, sqlite_engine))
        trigger = scheduler.get_job(REFRESH_JOB_ID).trigger
        first = trigger.get_next_fire_time(None, start)
        second = trigger.get_next_fire_time(None, first + timedelta(seconds=1))
        assert second - first == step
        assert scheduler.get_job(JOB_ID) is not None  # the digest run keeps its own job


def test_a_bad_refresh_cron_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source\.refresh"):
        make_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=9, source={"refresh": "61 * * * *"})


async def test_the_refresh_job_fires_on_its_cron_and_runs_no_digest(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    config = make_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=9)
    service = DigestService(config, sqlite_engine)
    calls: list[str] = []
    fired = asyncio.Event()

    async def refresh() -> None:
        calls.append("refresh")
        fired.set()

    async def run(day: object) -> None:
        calls.append("run")

    service.refresh = refresh  # type: ignore[method-assign]
    service.run = run  # type: ignore[method-assign]
    await start_frozen_until("2026-08-21T08:59:59Z", lambda: make_scheduler(service), fired)
    assert calls == ["refresh"]


async def test_the_services_refresh_fetches_and_stores_the_source(
    tmp_path: Path, sqlite_engine: sa.Engine, hf_fixtures: Path
) -> None:
    with SnapshotServer(hf_fixtures) as hf:
        config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=9, source={"lookback_days": 0})
        service = DigestService(config, sqlite_engine, clock=lambda: datetime(2026, 8, 21, 9, tzinfo=UTC))
        done = await service.refresh()
        assert [r.query["date"] for r in hf.requests_to(API_PATH)] == ["2026-08-21"]
    assert done is not None and len(done.papers) == 17
    assert len(load_papers(sqlite_engine, date(2026, 8, 21), date(2026, 8, 21))) == 17
