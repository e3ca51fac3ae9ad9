"""The source refresh against the local HTTP server playing Hugging Face: it catches up every day since the
last good fetch, and an empty weekday whose week had papers is an anomaly (alerted once, asked again,
never recorded as "nothing new"). SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_helpers import make_config

from digest.demo.snapshot_server import API_PATH, SnapshotServer
from digest.mailer import SmtpPool, SmtpSettings
from digest.outgoing import ServiceMail
from digest.refresh import MAX_CATCH_UP_DAYS, refresh, refresh_source
from digest.store.papers import load_papers
from digest.store.tables import alert, source_day

FRIDAY = date(2026, 8, 21)


def _items(hf_fixtures: Path, day: date, n: int = 3) -> list[dict[str, Any]]:
    """``n`` captured items re-dated to ``day`` under new arXiv ids."""
    base = json.loads((hf_fixtures / "api_daily_papers_date-2026-08-21.json").read_text("utf-8"))
    out = []
    for i in range(n):
        item = copy.deepcopy(base[i])
        item["paper"]["id"] = f"{day:%y%m}.{day.day:02d}{i:03d}"
        item["paper"]["submittedOnDailyAt"] = f"{day.isoformat()}T06:00:00.000Z"
        out.append(item)
    return out


def _serve_weekdays(hf: SnapshotServer, hf_fixtures: Path, first: date, last: date) -> None:
    day = first
    while day <= last:
        hf.add_day(day, _items(hf_fixtures, day) if day.weekday() < 5 else [])
        day += timedelta(days=1)


def _asked(hf: SnapshotServer) -> list[date]:
    days = {date.fromisoformat(r.query["date"]) for r in hf.requests_to(API_PATH)}
    hf.requests.clear()
    return sorted(days)


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _status(engine: sa.Engine, day: date) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(source_day.c.status).where(source_day.c.day == day)).scalar()


async def test_a_week_of_downtime_loses_nothing(
    engine: sa.Engine, hf: SnapshotServer, hf_fixtures: Path, tmp_path: Path
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=1, source={"lookback_days": 1})
    _serve_weekdays(hf, hf_fixtures, date(2026, 8, 10), FRIDAY)
    await refresh(config, engine, date(2026, 8, 12), now=_at(date(2026, 8, 12)))
    assert _asked(hf) == [date(2026, 8, 11), date(2026, 8, 12)]
    # Down from the 12th to the 21st: the refresh goes back to the day of the last good fetch.
    done = await refresh(config, engine, FRIDAY, now=_at(FRIDAY))
    week = [date(2026, 8, 12) + timedelta(days=i) for i in range(10)]
    assert _asked(hf) == week == done.days
    stored = {p.daily_date for p in load_papers(engine, week[0], FRIDAY)}
    assert stored == {d for d in week if d.weekday() < 5}
    assert done.anomalies == []
    # Caught up: the next refresh is back to the look-back window.
    await refresh(config, engine, FRIDAY, now=_at(FRIDAY, 11))
    assert _asked(hf) == [date(2026, 8, 20), FRIDAY]


async def test_the_catch_up_goes_back_at_most_thirty_days(
    sqlite_engine: sa.Engine, hf: SnapshotServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=1, source={"lookback_days": 0})
    long_ago = FRIDAY - timedelta(days=90)
    await refresh(config, sqlite_engine, long_ago, now=_at(long_ago))
    _asked(hf)
    await refresh(config, sqlite_engine, FRIDAY, now=_at(FRIDAY))
    asked = _asked(hf)
    assert asked[0] == FRIDAY - timedelta(days=MAX_CATCH_UP_DAYS) and asked[-1] == FRIDAY
    assert len(asked) == MAX_CATCH_UP_DAYS + 1


async def test_an_empty_weekday_is_alerted_once_asked_again_and_never_taken_as_nothing_new(
    engine: sa.Engine, hf: SnapshotServer, hf_fixtures: Path, tmp_path: Path, smtp_server: Any
) -> None:
    smtp = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=smtp.port, source={"lookback_days": 6})
    wednesday = date(2026, 8, 19)
    _serve_weekdays(hf, hf_fixtures, date(2026, 8, 10), FRIDAY)
    hf.add_day(wednesday, [])  # HF had a bad day: nothing listed on a Wednesday
    hf.add_day(FRIDAY, [])  # today, still early: empty is normal
    async with SmtpPool(SmtpSettings.from_config(config)) as pool:
        clock = [_at(FRIDAY)]
        service = ServiceMail.for_config(config, pool, lambda: clock[0])
        first = await refresh_source(config, engine, service)
        assert first is not None and first.anomalies == [wednesday]
        assert _status(engine, wednesday) == "anomaly"
        # Saturday and Sunday were empty too, and today is: normal.
        assert _status(engine, date(2026, 8, 16)) == _status(engine, FRIDAY) == "ok"
        alerts = [m for m in smtp.messages if "ops@example.org" in m.recipients]
        assert len(alerts) == 1 and "2026-08-19" in alerts[0].message["Subject"]
        assert "empty-day" in alerts[0].message["Subject"]

        # The next refresh, with a look-back that no longer reaches Wednesday, asks for it again: no new mail.
        config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=smtp.port, source={"lookback_days": 0})
        service = ServiceMail.for_config(config, pool, lambda: clock[0])
        _asked(hf)
        clock[0] = _at(FRIDAY, 11)
        second = await refresh_source(config, engine, service)
        assert second is not None and second.anomalies == [wednesday]
        assert wednesday in _asked(hf)
        assert len([m for m in smtp.messages if "ops@example.org" in m.recipients]) == 1

        # Hugging Face catches up: the day's papers arrive and the day is good.
        hf.add_day(wednesday, _items(hf_fixtures, wednesday))
        clock[0] = _at(FRIDAY, 12)
        third = await refresh_source(config, engine, service)
        assert third is not None and third.anomalies == []
    assert _status(engine, wednesday) == "ok"
    assert {p.daily_date for p in load_papers(engine, wednesday, wednesday)} == {wednesday}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alert)).scalar() == 1


@pytest.mark.parametrize("empty", [date(2026, 8, 15), date(2026, 8, 20)])
async def test_a_weekend_or_a_weekday_after_an_empty_week_is_not_an_anomaly(
    sqlite_engine: sa.Engine, hf: SnapshotServer, hf_fixtures: Path, tmp_path: Path, empty: date
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=1, source={"lookback_days": 6})
    if empty.weekday() < 5:  # a source with nothing for a whole week (a new mirror): nothing to compare
        for i in range(14):
            hf.add_day(FRIDAY - timedelta(days=i), [])
    else:
        _serve_weekdays(hf, hf_fixtures, date(2026, 8, 3), FRIDAY)
    done = await refresh(config, sqlite_engine, FRIDAY, now=_at(FRIDAY))
    assert done.anomalies == [] and _status(sqlite_engine, empty) == "ok"


async def test_a_run_sends_what_it_has_and_alerts_the_empty_weekday(
    engine: sa.Engine, hf: SnapshotServer, hf_fixtures: Path, tmp_path: Path, smtp_server: Any
) -> None:
    from pipeline_helpers import subscribe

    from digest.pipeline import RunOptions, run_digest

    smtp = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=smtp.port, source={"lookback_days": 3})
    _serve_weekdays(hf, hf_fixtures, date(2026, 8, 10), FRIDAY)
    hf.add_day(date(2026, 8, 19), [])
    subscribe(engine, "ada@example.org", "the")
    async with SmtpPool(SmtpSettings.from_config(config)) as pool:
        report = await run_digest(
            config, engine, FRIDAY, pool, clock=lambda: _at(FRIDAY, 7), options=RunOptions(retry_base_s=0.05)
        )
    assert report.status == "done" and report.sent == 1
    assert _status(engine, date(2026, 8, 19)) == "anomaly"
    with engine.connect() as conn:
        problems = [(r.day, r.problem) for r in conn.execute(sa.select(alert.c.day, alert.c.problem))]
    assert problems == [(date(2026, 8, 19), "empty-day")]
    assert len([m for m in smtp.messages if "ops@example.org" in m.recipients]) == 1
