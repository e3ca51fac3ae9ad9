"""The source refresh: fetch every day since the last good fetch, store the papers, and refuse to take a
suspicious empty day for "nothing new" (DESIGN.md section 7).

- Catch-up: the days fetched run from the last good fetch (at most ``MAX_CATCH_UP_DAYS`` back, and at least
  the caller's window), so a week of downtime loses nothing.
- Anomaly: a weekday at least a day old that comes back empty while a weekday of the week before it had
  papers is recorded as ``anomaly``, never as a good empty day: every refresh asks for it again (for up to
  ``MAX_CATCH_UP_DAYS``), and the admin is told once per such day.

``serve`` runs ``refresh_source`` on ``[source] refresh`` in its own job; a run for a date fetches through
``refresh`` too (its window), so both catch up and both notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from digest.config import Config
from digest.errors import SourceError
from digest.models import Paper
from digest.outgoing import ServiceMail, alert_admin
from digest.sources import fetch_days
from digest.store.db import Engine
from digest.store.papers import upsert_papers
from digest.store.source_days import (
    ANOMALY,
    OK,
    DayFetch,
    anomalous_days,
    known_counts,
    last_good_fetch,
    record_days,
)

log = logging.getLogger("digest.refresh")

#: How far back a refresh goes after downtime (and how long an anomalous day is asked again).
MAX_CATCH_UP_DAYS = 30
#: How far back an empty weekday looks for a weekday with papers.
_WEEK = 7
ANOMALY_PROBLEM = "empty-day"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What one refresh did: the days it asked for, the papers they held, the days that looked wrong."""

    days: list[date]
    papers: list[Paper]
    anomalies: list[date]


def days_to_fetch(config: Config, engine: Engine, today: date, start: date) -> list[date]:
    """The days a refresh on ``today`` asks for: from ``start`` or the day of the last good fetch, whichever
    is earlier (but at most ``MAX_CATCH_UP_DAYS`` back), plus every recent day recorded as an anomaly."""
    floor = today - timedelta(days=MAX_CATCH_UP_DAYS)
    first = start
    last = last_good_fetch(engine)
    if last is not None:
        first = min(first, last.astimezone(config.schedule.zone).date())
    first = max(first, floor)
    days = {first + timedelta(days=i) for i in range((today - first).days + 1)}
    days.update(d for d in anomalous_days(engine, floor) if d <= today)
    return sorted(days)


def find_anomalies(fetched: dict[date, int], known: dict[date, int], today: date) -> list[date]:
    """The fetched days that came back empty but should not have: a weekday (Mon-Fri) at least a day old,
    with a weekday of the week before it that had papers (``known``: papers per day, any source)."""
    out = []
    for day, count in sorted(fetched.items()):
        if count or day.weekday() >= 5 or day >= today:
            continue
        before = (day - timedelta(days=i) for i in range(1, _WEEK + 1))
        if any(d.weekday() < 5 and max(known.get(d, 0), fetched.get(d, 0)) > 0 for d in before):
            out.append(day)
    return out


async def refresh(
    config: Config, engine: Engine, today: date, *, now: datetime, start: date | None = None
) -> Refreshed:
    """Fetch and store the days of ``days_to_fetch`` (``start`` defaults to ``lookback_days`` before
    ``today``), and record what each day held. SourceError propagates and records nothing: the next
    refresh starts from the same last good fetch."""
    if start is None:
        start = today - timedelta(days=config.source.lookback_days)
    days = days_to_fetch(config, engine, today, start)
    batch = await fetch_days(config.source, days)
    upsert_papers(engine, batch.papers, now)
    fetched = {r.day: len(r.papers) for r in batch.results}
    known = known_counts(engine, days[0] - timedelta(days=_WEEK), today)
    anomalies = find_anomalies(fetched, known, today)
    record_days(engine, [DayFetch(d, n, ANOMALY if d in anomalies else OK) for d, n in fetched.items()], now)
    log.info(
        "fetched %d papers for %s..%s",
        len(batch.papers),
        days[0],
        days[-1],
        extra={"papers": len(batch.papers), "days": len(days)},
    )
    for day in anomalies:
        log.warning("the source answered no papers for %s, a weekday: asked again at the next refresh", day)
    return Refreshed(days, list(batch.papers), anomalies)


async def alert_anomalies(service: ServiceMail, engine: Engine, anomalies: list[date]) -> None:
    """Tell the admin about each suspicious empty day (once per day: the alert key is the day)."""
    for day in anomalies:
        detail = (
            f"Hugging Face Daily Papers answered no papers for {_WEEKDAYS[day.weekday()]} {day}, although "
            "the weekdays before it had papers. It was not taken as a day with nothing new: every refresh "
            f"asks for it again (for up to {MAX_CATCH_UP_DAYS} days). If the site shows papers for that "
            f"day, check [source] base_url and the logs; if it really was empty (a holiday), nothing is lost."
        )
        await alert_admin(service, engine, day, ANOMALY_PROBLEM, detail)


async def refresh_source(config: Config, engine: Engine, service: ServiceMail) -> Refreshed | None:
    """The scheduler's refresh job: ``refresh`` for today (in ``[schedule] timezone``), the admin alerted
    on a failed source (once a day) and on each anomaly. None when the source failed."""
    now = service.clock()
    today = now.astimezone(config.schedule.zone).date()
    try:
        done = await refresh(config, engine, today, now=now)
    except SourceError as exc:
        log.error("refresh failed: %s", exc)
        await alert_admin(service, engine, today, "source", f"the paper source failed: {exc}")
        return None
    await alert_anomalies(service, engine, done.anomalies)
    return done
