"""Admin alerts: one row per (day, problem), so the same problem is mailed at most once a day."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from digest.store.tables import alert


def record_alert(engine: sa.Engine, day: date, problem: str, detail: str, now: datetime) -> bool:
    """Note the alert for (day, problem); True when it should be mailed: new today, or not mailed yet
    (the mail failed earlier, e.g. while SMTP was down). Once mailed, the same problem stays quiet that day."""
    try:
        with engine.begin() as conn:
            conn.execute(alert.insert().values(day=day, problem=problem[:64], detail=detail, created_at=now))
    except sa.exc.IntegrityError:
        with engine.connect() as conn:
            sent = conn.execute(
                sa.select(alert.c.sent_at).where(alert.c.day == day, alert.c.problem == problem[:64])
            ).scalar()
        return sent is None
    return True


def mark_alert_sent(engine: sa.Engine, day: date, problem: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            alert.update().where(alert.c.day == day, alert.c.problem == problem[:64]).values(sent_at=now)
        )
