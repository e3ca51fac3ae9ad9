"""The source days: what the last fetch of each Daily Papers day found (``ok`` or ``anomaly``), and when.

The refresh reads it to know where to start (the last good fetch) and which days to ask again (anomalies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from digest.store.db import Engine
from digest.store.tables import paper, source_day

OK = "ok"
ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class DayFetch:
    """One day of one refresh: how many papers it brought and whether that looked right."""

    day: date
    papers: int
    status: str = OK


def record_days(engine: Engine, fetched: Iterable[DayFetch], now: datetime) -> None:
    """Note what this refresh found for each day (the newest fetch of a day replaces the older one)."""
    rows = [{"day": f.day, "status": f.status, "papers": f.papers, "fetched_at": now} for f in fetched]
    if not rows:
        return
    dialect = engine.dialect.name
    insert = postgresql.insert(source_day) if dialect == "postgresql" else sqlite.insert(source_day)
    ex = insert.excluded
    stmt = insert.on_conflict_do_update(
        index_elements=[source_day.c.day],
        set_={"status": ex.status, "papers": ex.papers, "fetched_at": ex.fetched_at},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)


def last_good_fetch(engine: Engine) -> datetime | None:
    """When the source last answered every day asked without an anomaly, or None before the first time."""
    query = sa.select(sa.func.max(source_day.c.fetched_at)).where(source_day.c.status == OK)
    with engine.connect() as conn:
        at: datetime | None = conn.execute(query).scalar()
    if at is not None and at.tzinfo is None:  # SQLite hands back naive datetimes; we store UTC
        at = at.replace(tzinfo=UTC)
    return at


def anomalous_days(engine: Engine, since: date) -> list[date]:
    """The days on or after ``since`` whose last fetch was an anomaly (to be asked again)."""
    query = sa.select(source_day.c.day).where(source_day.c.status == ANOMALY, source_day.c.day >= since)
    with engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def known_counts(engine: Engine, start: date, end: date) -> dict[date, int]:
    """Papers per day in [start, end]: the larger of the last fetch's count and the stored papers."""
    fetched = sa.select(source_day.c.day, source_day.c.papers).where(source_day.c.day.between(start, end))
    stored = (
        sa.select(paper.c.daily_date, sa.func.count())
        .where(paper.c.daily_date.between(start, end))
        .group_by(paper.c.daily_date)
    )
    counts: dict[date, int] = {}
    with engine.connect() as conn:
        for rows in (conn.execute(fetched), conn.execute(stored)):
            for day, n in rows:
                counts[day] = max(counts.get(day, 0), int(n))
    return counts
