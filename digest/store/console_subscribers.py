"""The console's subscriber search, a subscriber's record, and the operator's actions on one subscriber.

Statuses are read and compared as plain strings: a status this version has no name for (``complained``
arrives with bounce handling) is shown and respected, never an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryState, RunStatus
from digest.store.subscriber_rows import DELETED_DOMAIN, not_deleted, read_time, rules_by_subscriber
from digest.store.subscribers import listing
from digest.store.tables import delivery, rule, run, subscriber

PAGE_SIZE = 50


@dataclass(frozen=True)
class SearchQuery:
    """Filters of the subscriber list; empty strings mean 'any'."""

    address: str = ""
    status: str = ""
    cadence: str = ""
    rule_word: str = ""
    page: int = 1


@dataclass(frozen=True)
class SubscriberLine:
    id: int
    email: str
    status: str
    cadence: str
    created_at: datetime | None
    last_digest_at: datetime | None
    rules: int


@dataclass(frozen=True)
class SearchPage:
    items: list[SubscriberLine]
    total: int
    page: int
    pages: int


def _contains(column: Any, text: str) -> sa.ColumnElement[bool]:
    """``column`` contains ``text`` literally, case-insensitively: LIKE wildcards in it are escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.func.lower(column).like(f"%{escaped.lower()}%", escape="\\")


def search(engine: sa.Engine, q: SearchQuery) -> SearchPage:
    """Subscribers (deleted ones left out) matching every given filter, by address, one page at a time."""
    where: list[sa.ColumnElement[bool]] = []
    if q.address.strip():
        where.append(_contains(subscriber.c.email, q.address.strip()[:320]))
    if q.status:
        where.append(subscriber.c.status == q.status[:16])
    if q.cadence:
        where.append(subscriber.c.cadence == q.cadence[:8])
    if q.rule_word.strip():
        where.append(
            sa.exists(
                sa.select(rule.c.id).where(
                    rule.c.subscriber_id == subscriber.c.id,
                    _contains(rule.c.query, q.rule_word.strip()[:200]),
                )
            )
        )
    rules = (
        sa.select(sa.func.count())
        .where(rule.c.subscriber_id == subscriber.c.id)
        .correlate(subscriber)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        total = int(
            conn.execute(
                sa.select(sa.func.count()).select_from(subscriber).where(not_deleted(), *where)
            ).scalar()
            or 0
        )
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, q.page), pages)
        rows = conn.execute(
            listing(subscriber.c.created_at, rules.label("rules"))
            .where(*where)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        ).all()
    items = [
        SubscriberLine(
            r.id,
            r.email,
            r.status,
            r.cadence,
            read_time(r.created_at),
            read_time(r.last_digest_at),
            int(r.rules),
        )
        for r in rows
    ]
    return SearchPage(items, total, page, pages)


def statuses(engine: sa.Engine) -> list[str]:
    """Every status value present, for the filter (new ones appear without a code change)."""
    with engine.connect() as conn:
        return sorted(str(s) for (s,) in conn.execute(sa.select(subscriber.c.status).distinct()))


@dataclass(frozen=True)
class SubscriberRecord:
    """Everything the console shows about one subscriber: the row as stored, and the rules."""

    row: dict[str, Any]
    rules: list[tuple[str, str]]  # (name, query)

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def email(self) -> str:
        return str(self.row["email"])

    @property
    def status(self) -> str:
        return str(self.row["status"])

    @property
    def deleted(self) -> bool:
        return self.email.endswith("@" + DELETED_DOMAIN)


def record(engine: sa.Engine, subscriber_id: int) -> SubscriberRecord | None:
    """The subscriber's row (every column, times in aware UTC) and rules; None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscriber).where(subscriber.c.id == subscriber_id)).mappings().first()
        if row is None:
            return None
        rules = rules_by_subscriber(conn, [subscriber_id]).get(subscriber_id, [])
    values = {k: read_time(v) if isinstance(v, datetime) else v for k, v in row.items()}
    return SubscriberRecord(values, [(r.name, r.query) for r in rules])


class Change(enum.StrEnum):
    """An operator's status change, with the statuses it may start from."""

    PAUSE = "pause"
    UNSUBSCRIBE = "unsubscribe"
    REACTIVATE = "reactivate"


_FROM: dict[Change, tuple[str, ...]] = {
    Change.PAUSE: ("active",),
    Change.UNSUBSCRIBE: ("pending", "active", "paused", "bounced"),
    # Only a bounced address comes back: a complaint (status 'complained') is the person saying no.
    Change.REACTIVATE: ("bounced",),
}
_TO = {Change.PAUSE: "paused", Change.UNSUBSCRIBE: "unsubscribed", Change.REACTIVATE: "active"}


def change_status(engine: sa.Engine, subscriber_id: int, change: Change, now: datetime) -> bool:
    """Apply ``change`` conditionally (only from its allowed statuses); False when the status was not one."""
    values: dict[str, Any] = {"status": _TO[change], "updated_at": now}
    if change is Change.UNSUBSCRIBE:
        values["unsubscribed_at"] = now
    if change is Change.REACTIVATE:
        values.update(hard_bounces=0, unsubscribed_at=None)
    with engine.begin() as conn:
        return bool(
            conn.execute(
                subscriber.update()
                .where(
                    subscriber.c.id == subscriber_id,
                    subscriber.c.status.in_(_FROM[change]),
                    not_deleted(),
                )
                .values(**values)
            ).rowcount
        )


def allowed(change: Change, status: str) -> bool:
    return status in _FROM[change]


class Resend(enum.StrEnum):
    QUEUED = "queued"
    NO_RUN = "no run for that date yet"
    NOT_PLANNED = "not in that run"
    ALREADY = "already sent or on its way"
    MAYBE_ARRIVED = "uncertain: it may have arrived"


#: States whose digest may go again: nothing reached the person.
RESENDABLE = (DeliveryState.FAILED, DeliveryState.SKIPPED)


def resend(engine: sa.Engine, subscriber_id: int, run_date: date, now: datetime, note: str) -> Resend:
    """Put the subscriber's digest of ``run_date`` back in the outbox, through its own row.

    The row is the (run, subscriber) unique key, so a digest can never go twice: only a ``failed`` or
    ``skipped`` row moves back to ``pending`` (conditionally). A finished run becomes ``incomplete`` so the
    retry job (or ``digest run``) sends it; a running one picks it up on its next pass.
    """
    with engine.begin() as conn:
        run_row = conn.execute(sa.select(run.c.id, run.c.status).where(run.c.run_date == run_date)).first()
        if run_row is None:
            return Resend.NO_RUN
        state = conn.execute(
            sa.select(delivery.c.state).where(
                delivery.c.run_id == run_row.id, delivery.c.subscriber_id == subscriber_id
            )
        ).scalar()
        if state is None:
            return Resend.NOT_PLANNED
        if state == DeliveryState.UNCERTAIN:
            return Resend.MAYBE_ARRIVED
        moved = conn.execute(
            delivery.update()
            .where(
                delivery.c.run_id == run_row.id,
                delivery.c.subscriber_id == subscriber_id,
                delivery.c.state.in_(RESENDABLE),
            )
            .values(
                state=DeliveryState.PENDING,
                attempts=0,
                first_attempt_at=None,
                next_attempt_at=None,
                last_reply=note[:1000],
                updated_at=now,
            )
        ).rowcount
        if not moved:
            return Resend.ALREADY
        conn.execute(
            run.update()
            .where(run.c.id == run_row.id, run.c.status == RunStatus.DONE)
            .values(status=RunStatus.INCOMPLETE)
        )
    return Resend.QUEUED
