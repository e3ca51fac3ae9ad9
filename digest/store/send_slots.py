"""The send-time side of the subscriber and outbox aggregates: who is scheduled when, and who already has
a digest for a local date (the ``UNIQUE(subscriber_id, local_date)`` key of ``delivery``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa

from digest.models import Cadence, Subscriber, SubscriberStatus
from digest.sendtimes import Schedule
from digest.store.subscriber_rows import reload, require, send_time_values, utc
from digest.store.tables import delivery, subscriber

_SCHEDULES = (
    sa.select(
        subscriber.c.id,
        subscriber.c.cadence,
        subscriber.c.weekday,
        subscriber.c.send_time,
        subscriber.c.timezone,
    )
    .where(subscriber.c.status == SubscriberStatus.ACTIVE.value)
    .order_by(subscriber.c.id)
)


def active_schedules(engine: sa.Engine) -> list[Schedule]:
    """When each active subscriber wants the digest (one light query: no rules, no addresses)."""
    with engine.connect() as conn:
        return [
            Schedule(row.id, Cadence(row.cadence), row.weekday, row.send_time, row.timezone)
            for row in conn.execute(_SCHEDULES)
        ]


def planned_pairs(engine: sa.Engine, days: Iterable[date]) -> set[tuple[int, date]]:
    """The (subscriber id, local date) pairs of ``days`` that already have an outbox row."""
    wanted = list(days)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(delivery.c.subscriber_id, delivery.c.local_date).where(
                delivery.c.local_date.in_(wanted)
            )
        )
        return {(sid, day) for sid, day in rows}


def planned_on(engine: sa.Engine, day: date) -> set[int]:
    """The subscribers who have an outbox row (sent, pending, skipped...) for local date ``day``."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(delivery.c.subscriber_id).where(delivery.c.local_date == day))
        return {sid for (sid,) in rows}


def set_send_time(
    engine: sa.Engine,
    subscriber_id: int,
    send_time: str | None,
    timezone: str | None,
    now: datetime,
    *,
    allow_managed: bool = False,
) -> Subscriber:
    """Set (or with None, clear: follow ``[schedule]``) the subscriber's own send time and time zone.

    SubscriberError for a time off the 15-minute steps or an unknown zone. A zone without a send time means
    nothing (the cron has its own zone) and is not kept.
    """
    values = send_time_values(send_time, timezone)
    with engine.begin() as conn:
        require(conn, subscriber_id, allow_managed=allow_managed)
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(**values, updated_at=utc(now))
        )
        return reload(conn, subscriber_id)
