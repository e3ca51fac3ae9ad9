"""Send-time slots end to end: real aiosmtpd server, the captured HF day, SQLite and PostgreSQL.

Readers in Tokyo, Berlin and Los Angeles with their own send time, and one who follows the cron, through a
day of slots: each gets one digest for their local date at their hour, however often the slots repeat.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pipeline_helpers import DAY, local_dates, make_config, subscribe
from smtp_server import received_by

from digest import pipeline
from digest.mailer import SmtpPool, SmtpSettings
from digest.service import DigestService
from digest.slots import slot_time
from digest.store import db

RULE = "agent*"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def prepared(tmp_path: Path, hf: Any, port: int, db_url: str) -> tuple[Any, sa.Engine]:
    config = make_config(
        tmp_path, hf_url=hf.base_url, smtp_port=port, db_url=db_url, schedule={"cron": "0 7 * * *"}
    )
    engine = db.open_database(config.database_url)
    subscribe(engine, "cron@example.org", RULE)
    subscribe(engine, "tokyo@example.org", RULE, send_time="07:00", timezone="Asia/Tokyo")
    subscribe(engine, "berlin@example.org", RULE, send_time="08:00", timezone="Europe/Berlin")
    subscribe(engine, "la@example.org", RULE, send_time="07:00", timezone="America/Los_Angeles")
    # The papers are already stored (the refresh job's work): a slot never fetches.
    await pipeline.fetch_and_store(config, engine, DAY)
    return config, engine


async def test_a_day_of_slots_sends_each_reader_one_digest_at_their_own_hour(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server = smtp_server()
    config, engine = await prepared(tmp_path, hf, server.port, db_url)
    clock = Clock(datetime(2026, 8, 20, 21, 45, tzinfo=UTC))
    service = DigestService(config, engine, clock=clock)
    seen: list[dict[str, int]] = []

    async def slot_at(hour: int, minute: int, day: int = 21) -> None:
        clock.now = datetime(2026, 8, day, hour, minute, tzinfo=UTC)
        await service.slot()
        seen.append(received_by(server))

    await slot_at(21, 45, day=20)
    assert received_by(server) == {}, "06:45 in Tokyo: nobody is due yet"
    await slot_at(22, 0, day=20)  # 07:00 on the 21st in Tokyo
    await slot_at(22, 15, day=20)
    assert received_by(server) == {"tokyo@example.org": 1}
    await slot_at(6, 0)  # 08:00 in Berlin
    await slot_at(6, 15)
    assert received_by(server) == {"tokyo@example.org": 1, "berlin@example.org": 1}
    clock.now = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)  # the cron: its followers, nobody twice
    report = await service.run(DAY)
    assert report is not None and report.status == "done"
    assert "la@example.org" not in received_by(server), "00:00 in Los Angeles: not yet"
    for hour in (13, 14, 14, 15):  # 07:00 PDT is 14:00 UTC; repeated slots after it
        await slot_at(hour, 0)
    assert received_by(server) == {
        "tokyo@example.org": 1,
        "berlin@example.org": 1,
        "cron@example.org": 1,
        "la@example.org": 1,
    }
    # One row per local date each (Berlin's and LA's 20th was still "today" at the first slot: planned
    # then, with nothing in its window, so skipped rather than mailed).
    dates = local_dates(engine)
    assert all(len(days) == len(set(days)) and DAY in days for days in dates.values()), dates
    assert dates["tokyo@example.org"] == [DAY] and dates["cron@example.org"] == [DAY]
    engine.dispose()


async def test_repeated_and_overlapping_slots_never_send_two_digests_for_one_local_date(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server = smtp_server()
    config, engine = await prepared(tmp_path, hf, server.port, db_url)
    clock = Clock(datetime(2026, 8, 21, 14, 0, tzinfo=UTC))  # everyone's hour of the 21st has come
    services = [DigestService(config, engine, clock=clock) for _ in range(3)]
    for _ in range(2):
        for service in services:  # three processes' slots, each twice
            await service.slot()
        clock.now += timedelta(minutes=15)
    assert received_by(server) == {"berlin@example.org": 1, "la@example.org": 1, "tokyo@example.org": 1}
    engine.dispose()


async def test_digest_run_sends_now_to_everyone_due_whatever_their_hour(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server = smtp_server()
    config, engine = await prepared(tmp_path, hf, server.port, db_url)
    service = DigestService(config, engine, clock=Clock(datetime(2026, 8, 20, 22, 0, tzinfo=UTC)))
    await service.slot()  # Tokyo's digest of the 21st
    async with SmtpPool(SmtpSettings.from_config(config)) as pool:
        report = await pipeline.run_digest(config, engine, DAY, pool)  # `digest run --date 2026-08-21`
    assert report.status == "done"
    assert received_by(server) == {
        "tokyo@example.org": 1,
        "berlin@example.org": 1,
        "cron@example.org": 1,
        "la@example.org": 1,
    }
    engine.dispose()


def test_a_slot_is_named_by_its_quarter_hour_whatever_the_clock_of_the_process_that_fires_it() -> None:
    quarter = datetime(2026, 8, 20, 22, 0, tzinfo=UTC)
    late = [quarter, quarter + timedelta(milliseconds=300), quarter + timedelta(minutes=14, seconds=59)]
    assert {slot_time(now) for now in late} == {quarter}
    kathmandu = datetime(2026, 8, 21, 3, 59, 30, tzinfo=ZoneInfo("Asia/Kathmandu"))  # +05:45
    assert slot_time(kathmandu) == datetime(2026, 8, 20, 22, 0, tzinfo=UTC)
    assert slot_time(quarter + timedelta(minutes=15)) == quarter + timedelta(minutes=15)
