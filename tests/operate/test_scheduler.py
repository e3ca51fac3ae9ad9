"""The schedule: the cron in the configured zone across DST, the run date, and the catch-up decision."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from operate_helpers import start_frozen_until
from pipeline_helpers import make_config

from digest.config import Config
from digest.scheduler import (
    build_scheduler,
    last_fire_time,
    make_trigger,
    missed_run_date,
    next_fire_time,
    retry_run_date,
    retry_tick,
)
from digest.store import runs
from digest.store.tables import run

PARIS = ZoneInfo("Europe/Paris")


def paris_config(tmp_path: Path, cron: str = "0 7 * * *") -> Config:
    return make_config(
        tmp_path,
        hf_url="http://127.0.0.1:9",
        smtp_port=9,
        schedule={"cron": cron, "timezone": "Europe/Paris"},
    )


def fire_times(config: Config, start: datetime, n: int) -> list[datetime]:
    trigger = make_trigger(config)
    out: list[datetime] = []
    at = trigger.get_next_fire_time(None, start)
    while len(out) < n:
        out.append(at)
        at = trigger.get_next_fire_time(None, at + timedelta(seconds=1))
    return out


@pytest.mark.parametrize(
    ("start", "utc_hours"),
    [
        # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 07:00 Paris moves from 06:00 to 05:00 UTC.
        (datetime(2026, 3, 27, 12, tzinfo=PARIS), [6, 5, 5, 5]),
        # 2026-10-25: back from 03:00 CEST to 02:00 CET; 07:00 Paris moves from 05:00 to 06:00 UTC.
        (datetime(2026, 10, 23, 12, tzinfo=PARIS), [5, 6, 6, 6]),
    ],
)
def test_the_daily_run_fires_at_seven_paris_time_across_a_dst_change(
    tmp_path: Path, start: datetime, utc_hours: list[int]
) -> None:
    times = fire_times(paris_config(tmp_path), start, 4)
    assert [t.astimezone(PARIS).hour for t in times] == [7, 7, 7, 7]
    assert [t.astimezone(PARIS).minute for t in times] == [0, 0, 0, 0]
    assert [t.astimezone(UTC).hour for t in times] == utc_hours
    days = [t.astimezone(PARIS).date() for t in times]
    assert days == [start.date() + timedelta(days=i) for i in range(1, 5)], (
        "one run per day, none lost or doubled"
    )


def test_a_run_inside_the_skipped_hour_still_fires_once_on_the_dst_day(tmp_path: Path) -> None:
    # 02:30 does not exist in Paris on 2026-03-29: the day still gets exactly one run.
    times = fire_times(paris_config(tmp_path, "30 2 * * *"), datetime(2026, 3, 28, 12, tzinfo=PARIS), 3)
    assert [t.astimezone(PARIS).date() for t in times] == [
        date(2026, 3, 29),
        date(2026, 3, 30),
        date(2026, 3, 31),
    ]


# The frozen clock starts 1.5 s before the fire: freezegun's start (it patches every loaded module) and a
# loaded machine can eat a few hundred milliseconds, and a scheduler started after the fire time would
# wait for the next day's.
@pytest.mark.parametrize(
    ("frozen", "expected_day", "expected_utc"),
    [
        ("2026-03-29T04:59:58.5Z", date(2026, 3, 29), datetime(2026, 3, 29, 5, tzinfo=UTC)),
        ("2026-10-25T05:59:58.5Z", date(2026, 10, 25), datetime(2026, 10, 25, 6, tzinfo=UTC)),
    ],
)
async def test_the_scheduler_calls_the_job_at_seven_paris_with_the_paris_date(
    tmp_path: Path, frozen: str, expected_day: date, expected_utc: datetime
) -> None:
    config = paris_config(tmp_path)
    calls: list[tuple[date, datetime]] = []
    fired = asyncio.Event()

    async def job(run_date: date) -> None:
        calls.append((run_date, datetime.now(UTC)))
        fired.set()

    await start_frozen_until(frozen, lambda: build_scheduler(config, job), fired)
    ((run_date, at),) = calls
    assert run_date == expected_day
    assert expected_utc <= at < expected_utc + timedelta(seconds=2)


async def test_the_run_date_is_the_configured_zone_s_day_not_utc_s(tmp_path: Path) -> None:
    # 00:30 in Paris is still the previous day in UTC: the digest is for the Paris day.
    config = paris_config(tmp_path, "30 0 * * *")
    got: list[date] = []
    fired = asyncio.Event()

    async def job(run_date: date) -> None:
        got.append(run_date)
        fired.set()

    await start_frozen_until("2026-06-14T22:29:58.5Z", lambda: build_scheduler(config, job), fired)
    assert got == [date(2026, 6, 15)]


def test_last_fire_time_finds_the_previous_fire_of_minute_daily_and_weekly_crons(tmp_path: Path) -> None:
    now = datetime(2026, 6, 17, 9, 41, 30, tzinfo=PARIS)  # a Wednesday
    cases = {
        "* * * * *": datetime(2026, 6, 17, 9, 41, tzinfo=PARIS),
        "0 7 * * *": datetime(2026, 6, 17, 7, 0, tzinfo=PARIS),
        "0 10 * * *": datetime(2026, 6, 16, 10, 0, tzinfo=PARIS),
        "0 7 * * mon": datetime(2026, 6, 15, 7, 0, tzinfo=PARIS),
        "0 7 1 1 *": datetime(2026, 1, 1, 7, 0, tzinfo=PARIS),
    }
    for cron, expected in cases.items():
        assert last_fire_time(make_trigger(paris_config(tmp_path, cron)), now) == expected, cron
    assert next_fire_time(paris_config(tmp_path), now) == datetime(2026, 6, 18, 7, tzinfo=PARIS)


def test_catch_up_is_due_only_after_today_s_fire_time_and_only_until_the_run_is_done(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    config = paris_config(tmp_path)
    day = date(2026, 6, 17)
    before = datetime(2026, 6, 17, 6, 59, tzinfo=PARIS)
    after = datetime(2026, 6, 17, 9, 30, tzinfo=PARIS)
    # Before 07:00 today, yesterday's fire is the last one: today's run will come on time.
    assert missed_run_date(config, sqlite_engine, before) is None
    # Down at 07:00, up at 09:30: today's run is caught up.
    assert missed_run_date(config, sqlite_engine, after) == day
    # A run that failed or was interrupted is still due; a finished one never again.
    claim = runs.claim_run(sqlite_engine, day, after.astimezone(UTC))
    runs.finish_run(sqlite_engine, claim.id, "failed", after.astimezone(UTC), report={"error": "smtp down"})
    assert missed_run_date(config, sqlite_engine, after) == day
    runs.finish_run(sqlite_engine, claim.id, "interrupted", after.astimezone(UTC))
    assert missed_run_date(config, sqlite_engine, after) == day
    runs.finish_run(sqlite_engine, claim.id, "done", after.astimezone(UTC))
    assert missed_run_date(config, sqlite_engine, after) is None
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(run)).scalar() == 1


def test_catch_up_uses_the_configured_zone_s_today(tmp_path: Path, sqlite_engine: sa.Engine) -> None:
    config = paris_config(tmp_path, "30 0 * * *")
    # 23:00 UTC on 14 June is 01:00 on 15 June in Paris: the 00:30 run of 15 June was missed.
    assert missed_run_date(config, sqlite_engine, datetime(2026, 6, 14, 23, tzinfo=UTC)) == date(2026, 6, 15)


async def test_the_retry_job_takes_up_only_today_s_unfinished_run_after_its_fire_time_and_when_idle(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    config = paris_config(tmp_path)
    day = date(2026, 6, 17)
    before = datetime(2026, 6, 17, 6, 59, tzinfo=PARIS)
    after = datetime(2026, 6, 17, 9, 30, tzinfo=PARIS)
    tomorrow = datetime(2026, 6, 18, 6, 0, tzinfo=PARIS)  # before tomorrow's fire: yesterday is not retried
    called: list[date] = []

    async def job(run_date: date) -> None:
        called.append(run_date)

    async def tick(now: datetime, *, busy: bool = False) -> date | None:
        return await retry_tick(config, sqlite_engine, job, busy=lambda: busy, clock=lambda: now)

    assert retry_run_date(config, sqlite_engine, after) is None, "no run row: the cron or catch-up owns it"
    claim = runs.claim_run(sqlite_engine, day, after.astimezone(UTC))
    assert retry_run_date(config, sqlite_engine, after) is None, "running: someone is on it"
    for status in ("failed", "incomplete", "interrupted"):
        runs.finish_run(sqlite_engine, claim.id, status, after.astimezone(UTC))
        assert retry_run_date(config, sqlite_engine, after) == (day, status)
        assert retry_run_date(config, sqlite_engine, before) is None
        assert retry_run_date(config, sqlite_engine, tomorrow) is None
    assert await tick(after, busy=True) is None, "a run is in progress in this process"
    assert called == []
    assert await tick(after) == day
    assert called == [day]
    runs.finish_run(sqlite_engine, claim.id, "done", after.astimezone(UTC))
    assert retry_run_date(config, sqlite_engine, after) is None
    assert await tick(after) is None
    assert called == [day]


def test_the_retry_job_picks_up_todays_run_left_running_by_a_dead_process(tmp_path: Path) -> None:
    from digest.config_load import parse_config
    from digest.scheduler import retry_run_date
    from digest.store import db

    config = parse_config({"schedule": {"cron": "0 7 * * *"}}, tmp_path / "c.toml")
    engine = db.open_database(f"sqlite:///{tmp_path / 'd.db'}")
    started = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    runs.claim_run(engine, date(2026, 11, 20), started, owner="elsewhere:1:x")
    assert retry_run_date(config, engine, started + timedelta(minutes=1)) is None  # alive: its own run
    assert retry_run_date(config, engine, started + timedelta(minutes=30)) == (
        date(2026, 11, 20),
        "abandoned",
    )
    engine.dispose()
