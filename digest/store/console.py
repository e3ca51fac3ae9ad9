"""What the operator console's dashboard and lists read (all of its SQL, read-only).

Tables that other work adds later (``feedback``; a per-subscriber ``send_time``) are looked up at run time,
each in one function here, so the pages need no change when they arrive.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryState, RunStatus
from digest.store.tables import alert, delivery, feedback, paper, run, subscriber

DELETED_SUFFIX = "@deleted.invalid"
#: Delivery states drawn in the chart, in legend order.
CHART_STATES = ("sent", "failed", "uncertain", "bounced")
#: Delivery states the "problems" lists show.
PROBLEM_STATES = (DeliveryState.FAILED, DeliveryState.UNCERTAIN, DeliveryState.RETRY)


def aware(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DayCounts:
    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def daily_counts(engine: sa.Engine, first: date, last: date, zone: tzinfo) -> list[DayCounts]:
    """Per run date from ``first`` to ``last``: digests sent, failed, uncertain, and addresses bounced."""
    query = (
        sa.select(run.c.run_date, delivery.c.state, sa.func.count())
        .join(run, run.c.id == delivery.c.run_id)
        .where(
            run.c.run_date >= first,
            run.c.run_date <= last,
            delivery.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.UNCERTAIN]),
        )
        .group_by(run.c.run_date, delivery.c.state)
    )
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    with engine.connect() as conn:
        for day, state, n in conn.execute(query):
            per_day[day][str(state)] += int(n)
        for day, n in bounces_per_day(conn, first, last, zone).items():
            per_day[day]["bounced"] += n
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [DayCounts(d, {s: per_day[d][s] for s in CHART_STATES}) for d in days]


def bounces_per_day(conn: sa.Connection, first: date, last: date, zone: tzinfo) -> dict[date, int]:
    """Bounces received per day (hard and soft, from ``feedback``)."""
    since = datetime.combine(first, datetime.min.time(), zone) - timedelta(days=1)
    times: Iterable[Any] = conn.execute(
        sa.select(feedback.c.received_at).where(
            feedback.c.received_at >= since, feedback.c.kind.in_(("hard", "soft"))
        )
    ).scalars()
    out: Counter[date] = Counter()
    for value in times:
        moment = aware(value)
        if moment is not None and first <= (day := moment.astimezone(zone).date()) <= last:
            out[day] += 1
    return dict(out)


@dataclass(frozen=True)
class RunSummary:
    id: int
    run_date: date
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    papers_fetched: int
    error: str | None
    counts: dict[str, int] = field(default_factory=dict)


def recent_runs(engine: sa.Engine, since: date) -> list[RunSummary]:
    """Runs (slots) dated ``since`` or later, newest first, with their outbox counts by state."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(run).where(run.c.run_date >= since).order_by(run.c.run_date.desc())
        ).all()
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        ids = [r.id for r in rows]
        if ids:
            for run_id, state, n in conn.execute(
                sa.select(delivery.c.run_id, delivery.c.state, sa.func.count())
                .where(delivery.c.run_id.in_(ids))
                .group_by(delivery.c.run_id, delivery.c.state)
            ):
                counts[run_id][str(state)] = int(n)
    return [
        RunSummary(
            r.id,
            r.run_date,
            r.status,
            aware(r.started_at),
            aware(r.finished_at),
            r.papers_fetched,
            r.error,
            counts.get(r.id, {}),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class AlertItem:
    day: date
    problem: str
    detail: str
    created_at: datetime | None
    mailed: bool


def open_alerts(engine: sa.Engine, since: datetime) -> list[AlertItem]:
    """Alerts raised since ``since``, newest first (an alert is per problem per day)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert).where(alert.c.created_at >= since).order_by(alert.c.created_at.desc()).limit(50)
        ).all()
    return [AlertItem(r.day, r.problem, r.detail, aware(r.created_at), r.sent_at is not None) for r in rows]


@dataclass(frozen=True)
class SourceHealth:
    last_good_fetch: datetime | None
    papers_per_day: list[tuple[date, int]]
    last_error: str | None


def source_health(engine: sa.Engine, first: date, last: date) -> SourceHealth:
    """When papers were last fetched, how many per day, and the newest run's source error if any."""
    with engine.connect() as conn:
        seen = conn.execute(sa.select(sa.func.max(paper.c.last_seen_at))).scalar()
        per_day: dict[date, int] = dict(
            conn.execute(
                sa.select(paper.c.daily_date, sa.func.count())
                .where(paper.c.daily_date >= first, paper.c.daily_date <= last)
                .group_by(paper.c.daily_date)
            ).all()
        )
        error = conn.execute(
            sa.select(run.c.error)
            .where(run.c.status == RunStatus.FAILED)
            .order_by(run.c.run_date.desc())
            .limit(1)
        ).scalar()
    days = [last - timedelta(days=i) for i in range((last - first).days + 1)]
    source_error = error if error and "source" in error else None
    return SourceHealth(aware(seen), [(d, int(per_day.get(d, 0))) for d in days], source_error)


def subscriber_counts_by_status(engine: sa.Engine) -> dict[str, int]:
    """Subscribers per status (deleted ones left out), any status string the table holds."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscriber.c.status, sa.func.count())
            .where(sa.not_(subscriber.c.email.like("%" + DELETED_SUFFIX)))
            .group_by(subscriber.c.status)
            .order_by(subscriber.c.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def active_by_send_hour(engine: sa.Engine) -> dict[int | None, int]:
    """Active subscribers per send hour; ``None`` counts those on the schedule's default time.

    Until subscribers have their own ``send_time`` column everybody is on the default. When it exists
    (a time, or an 'HH:MM' string), it is grouped by its hour here and nowhere else.
    """
    column = subscriber.c.get("send_time")
    active = subscriber.c.status == "active"
    with engine.connect() as conn:
        if column is None:
            total = conn.execute(sa.select(sa.func.count()).where(active)).scalar()
            return {None: int(total or 0)} if total else {}
        rows = conn.execute(sa.select(column, sa.func.count()).where(active).group_by(column)).all()
    out: Counter[int | None] = Counter()
    for value, n in rows:
        out[_hour(value)] += int(n)
    return dict(out)


def _hour(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "hour"):
        return int(value.hour)
    text = str(value)
    return int(text[:2]) if text[:2].isdigit() else None


@dataclass(frozen=True)
class DeliveryItem:
    id: int
    run_date: date
    subscriber_id: int
    email: str
    state: str
    attempts: int
    last_reply: str | None
    paper_ids: list[str]
    updated_at: datetime | None
    next_attempt_at: datetime | None


def _delivery_query() -> sa.Select[Any]:
    return sa.select(
        delivery.c.id,
        run.c.run_date,
        delivery.c.subscriber_id,
        subscriber.c.email,
        delivery.c.state,
        delivery.c.attempts,
        delivery.c.last_reply,
        delivery.c.paper_ids,
        delivery.c.updated_at,
        delivery.c.next_attempt_at,
    ).select_from(
        delivery.join(run, run.c.id == delivery.c.run_id).join(
            subscriber, subscriber.c.id == delivery.c.subscriber_id
        )
    )


def _delivery_items(conn: sa.Connection, query: sa.Select[Any]) -> list[DeliveryItem]:
    return [
        DeliveryItem(
            r.id,
            r.run_date,
            r.subscriber_id,
            r.email,
            str(r.state),
            r.attempts,
            r.last_reply,
            list(r.paper_ids or []),
            aware(r.updated_at),
            aware(r.next_attempt_at),
        )
        for r in conn.execute(query)
    ]


def problem_deliveries(engine: sa.Engine, state: str, since: date, limit: int = 200) -> list[DeliveryItem]:
    """Failed, uncertain or retrying rows of runs dated ``since`` or later, newest first, with replies."""
    query = (
        _delivery_query()
        .where(delivery.c.state == state, run.c.run_date >= since)
        .order_by(run.c.run_date.desc(), delivery.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return _delivery_items(conn, query)


def deliveries_of(engine: sa.Engine, subscriber_id: int, limit: int = 500) -> list[DeliveryItem]:
    """Every delivery of one subscriber (up to ``limit``), newest first."""
    query = (
        _delivery_query()
        .where(delivery.c.subscriber_id == subscriber_id)
        .order_by(run.c.run_date.desc(), delivery.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return _delivery_items(conn, query)


def feedback_rows(
    engine: sa.Engine, subscriber_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Bounces and complaints as received (newest first), for one subscriber or all."""
    columns = [c for c in feedback.c if c.name != "raw"]  # the message itself stays out of the page
    query = sa.select(*columns).order_by(feedback.c.received_at.desc(), feedback.c.id.desc()).limit(limit)
    if subscriber_id is not None:
        query = query.where(feedback.c.subscriber_id == subscriber_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
