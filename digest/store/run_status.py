"""What the scheduler, ``serve`` and ``/healthz`` read about runs and alerts, and the runs a stopping
process hands back. The run itself (claim, heartbeat, finish) and the alert writes live with the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from digest.store.db import Engine
from digest.store.tables import alert, run


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One ``run`` row as the health check shows it."""

    run_date: date
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    report: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """One admin alert as the health check shows it."""

    day: date
    problem: str
    detail: str
    created_at: datetime


def latest_run(engine: Engine) -> RunSummary | None:
    """The run with the latest date, or None before the first run."""
    query = sa.select(
        run.c.run_date, run.c.status, run.c.started_at, run.c.finished_at, run.c.error, run.c.report
    )
    with engine.connect() as conn:
        row = conn.execute(query.order_by(run.c.run_date.desc()).limit(1)).first()
    return None if row is None else RunSummary(*row)


def recent_alerts(engine: Engine, since: datetime, *, limit: int = 10) -> list[AlertSummary]:
    """The alerts created at or after ``since``, newest first."""
    query = (
        sa.select(alert.c.day, alert.c.problem, alert.c.detail, alert.c.created_at)
        .where(alert.c.created_at >= since)
        .order_by(alert.c.created_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [AlertSummary(*row) for row in conn.execute(query)]


def run_status(engine: Engine, day: date) -> str | None:
    """The status of the run row for ``day``, None when there is none."""
    with engine.connect() as conn:
        status: str | None = conn.execute(sa.select(run.c.status).where(run.c.run_date == day)).scalar()
    return status


def run_status_and_heartbeat(engine: Engine, day: date) -> tuple[str, datetime | None] | None:
    """(status, last heartbeat in UTC) of the run row for ``day``, None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(run.c.status, run.c.heartbeat_at).where(run.c.run_date == day)).first()
    if row is None:
        return None
    status, beat = row
    # SQLite returns naive datetimes; everything we write is UTC.
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return str(status), beat


def release_runs(engine: Engine, owner: str, now: datetime, reason: str) -> int:
    """Mark the runs ``owner`` still holds as interrupted, so a restart takes them over at once."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                run.update()
                .where(run.c.owner == owner, run.c.status == "running")
                .values(status="interrupted", error=reason, heartbeat_at=now)
            ).rowcount
        )
