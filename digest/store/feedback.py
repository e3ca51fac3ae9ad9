"""SQL of delivery feedback: the received bounces and complaints, per-address bounce scores, and the
subscriber state changes they cause (DESIGN section 12). The rules live in ``digest.feedback``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from digest.store.tables import bounce_score, delivery, feedback, subscriber

#: Statuses that a bounce moves to ``bounced`` (an unsubscribed or already bounced address stays as it is).
BOUNCEABLE = ("active", "paused", "pending")


@dataclass(frozen=True)
class Target:
    """The subscriber a piece of feedback is about."""

    subscriber_id: int
    email: str
    status: str


@dataclass(frozen=True)
class Score:
    hard_count: int = 0
    soft_score: float = 0.0
    last_bounce_at: datetime | None = None


@dataclass(frozen=True)
class FeedbackInfo:
    """One received message or event, for ``digest bounces``."""

    id: int
    received_at: datetime
    source: str
    kind: str
    email: str | None
    reason: str | None
    action: str
    raw_size: int


@dataclass(frozen=True)
class BounceSummary:
    """What ``digest subscribers --json`` shows about an address's failures."""

    hard_bounces: int
    last_failure: str | None
    last_failure_at: datetime | None


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def subscriber_of_delivery(conn: sa.Connection, delivery_id: int) -> Target | None:
    """The subscriber a delivery went to (None when the delivery or the subscriber is gone)."""
    row = conn.execute(
        sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.status)
        .join(delivery, delivery.c.subscriber_id == subscriber.c.id)
        .where(delivery.c.id == delivery_id)
    ).first()
    return Target(row.id, row.email, row.status) if row else None


def delivery_exists(conn: sa.Connection, delivery_id: int) -> bool:
    return conn.execute(sa.select(delivery.c.id).where(delivery.c.id == delivery_id)).first() is not None


def subscriber_by_email(conn: sa.Connection, email: str) -> Target | None:
    """The subscriber with this address, compared without case (MTAs change the case of addresses)."""
    row = conn.execute(
        sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.status)
        .where(sa.func.lower(subscriber.c.email) == email.strip().lower())
        .order_by(subscriber.c.id)
        .limit(1)
    ).first()
    return Target(row.id, row.email, row.status) if row else None


def load_score(conn: sa.Connection, subscriber_id: int) -> Score:
    row = conn.execute(sa.select(bounce_score).where(bounce_score.c.subscriber_id == subscriber_id)).first()
    if row is None:
        return Score()
    return Score(row.hard_count, float(row.soft_score), _aware(row.last_bounce_at))


def save_score(conn: sa.Connection, subscriber_id: int, score: Score, reason: str | None) -> None:
    values = {
        "hard_count": score.hard_count,
        "soft_score": score.soft_score,
        "last_bounce_at": score.last_bounce_at,
        "last_reason": reason,
    }
    updated = conn.execute(
        bounce_score.update().where(bounce_score.c.subscriber_id == subscriber_id).values(**values)
    ).rowcount
    if not updated:
        conn.execute(bounce_score.insert().values(subscriber_id=subscriber_id, **values))


def mark_bounced(conn: sa.Connection, subscriber_id: int, now: datetime) -> bool:
    """Move the subscriber to ``bounced`` if it still gets mail; True when this call moved it."""
    return bool(
        conn.execute(
            subscriber.update()
            .where(subscriber.c.id == subscriber_id, subscriber.c.status.in_(BOUNCEABLE))
            .values(status="bounced", updated_at=now)
        ).rowcount
    )


def unsubscribe_for_complaint(conn: sa.Connection, subscriber_id: int, now: datetime) -> bool:
    """Unsubscribe at once (also a config-managed address: the sync keeps it unsubscribed); True if it was
    not unsubscribed before."""
    return bool(
        conn.execute(
            subscriber.update()
            .where(subscriber.c.id == subscriber_id, subscriber.c.status != "unsubscribed")
            .values(status="unsubscribed", unsubscribed_at=now, updated_at=now)
        ).rowcount
    )


def insert_feedback(conn: sa.Connection, values: dict[str, Any]) -> int:
    """Record one received message or event; its id."""
    return int(conn.execute(feedback.insert().values(**values).returning(feedback.c.id)).scalar_one())


def list_feedback(engine: sa.Engine, since: datetime | None = None, limit: int = 1000) -> list[FeedbackInfo]:
    """The received feedback, newest first."""
    query = sa.select(
        feedback.c.id,
        feedback.c.received_at,
        feedback.c.source,
        feedback.c.kind,
        feedback.c.email,
        feedback.c.reason,
        feedback.c.action,
        feedback.c.raw_size,
    ).order_by(feedback.c.received_at.desc(), feedback.c.id.desc())
    if since is not None:
        query = query.where(feedback.c.received_at >= since)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).all()
    return [
        FeedbackInfo(
            r.id,
            _aware(r.received_at) or r.received_at,
            r.source,
            r.kind,
            r.email,
            r.reason,
            r.action,
            r.raw_size,
        )
        for r in rows
    ]


def count_by_kind(engine: sa.Engine, since: datetime | None = None) -> dict[str, int]:
    """How many messages of each kind were received (``unreadable`` ones included)."""
    query = sa.select(feedback.c.kind, sa.func.count()).group_by(feedback.c.kind)
    if since is not None:
        query = query.where(feedback.c.received_at >= since)
    with engine.connect() as conn:
        return {kind: int(n) for kind, n in conn.execute(query).all()}


def raw_message(engine: sa.Engine, feedback_id: int) -> bytes | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(feedback.c.raw).where(feedback.c.id == feedback_id)).scalar()
    return bytes(value) if value is not None else None


def bounce_summaries(
    engine: sa.Engine, subscriber_ids: Sequence[int] | None = None
) -> dict[str, BounceSummary]:
    """Per subscriber address: hard bounces (5xx at send time in a row, plus hard bounces that came back by mail)
    and the last failure reply, whichever came last: a refused delivery or a bounce."""
    with engine.connect() as conn:
        subs = sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.hard_bounces)
        if subscriber_ids is not None:
            subs = subs.where(subscriber.c.id.in_(subscriber_ids))
        sub_rows = conn.execute(subs).all()
        counts = {r.id: int(r.hard_bounces or 0) for r in sub_rows}
        emails = {r.id: r.email for r in sub_rows}
        scores = conn.execute(
            sa.select(
                bounce_score.c.subscriber_id,
                bounce_score.c.hard_count,
                bounce_score.c.last_bounce_at,
                bounce_score.c.last_reason,
            )
        ).all()
        latest = (
            sa.select(delivery.c.subscriber_id, sa.func.max(delivery.c.updated_at).label("at"))
            .where(delivery.c.state == "failed")
            .group_by(delivery.c.subscriber_id)
            .subquery()
        )
        failed = conn.execute(
            sa.select(delivery.c.subscriber_id, delivery.c.last_reply, delivery.c.updated_at).join(
                latest,
                sa.and_(
                    latest.c.subscriber_id == delivery.c.subscriber_id, latest.c.at == delivery.c.updated_at
                ),
            )
        ).all()
    last: dict[int, tuple[datetime, str | None]] = {}
    for sid, reply, at in failed:
        last[sid] = (_aware(at) or at, reply)
    hard = dict.fromkeys(counts, 0)
    for s in scores:
        if s.subscriber_id not in counts:
            continue
        hard[s.subscriber_id] = int(s.hard_count)
        at = _aware(s.last_bounce_at)
        if at is not None and (s.subscriber_id not in last or last[s.subscriber_id][0] <= at):
            last[s.subscriber_id] = (at, s.last_reason)
    return {
        emails[sid]: BounceSummary(
            hard_bounces=counts[sid] + hard[sid],
            last_failure=last[sid][1] if sid in last else None,
            last_failure_at=last[sid][0] if sid in last else None,
        )
        for sid in counts
    }
