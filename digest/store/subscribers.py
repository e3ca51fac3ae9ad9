"""The subscriber repository: every read and write of ``subscriber`` and ``rule`` (SQLAlchemy Core).

Times are stored in UTC. Each public function is one transaction. Config-managed subscribers (from
``[[subscribers]]`` in config.toml) cannot be changed through the web: the functions the web calls raise
SubscriberError for them unless ``allow_managed=True`` (an unsubscribe is always honoured: the law beats
the config file).

Deleting "all my data" keeps the row but empties it: the address becomes ``deleted-<id>@deleted.invalid``
(a placeholder that cannot be turned back into the address and that no real address can collide with,
since ``.invalid`` is refused by :func:`digest.addresses.normalize_email`), the name, rules, delivered
history, delivery replies, IP address, user agent and form copy go; what stays is the minimal record of
consent and its withdrawal (consent time and source, unsubscribe time) that a data protection audit asks for.

The web form's double opt-in lives in ``signup``, the config file's list in ``config_sync``, the parts
they share in ``subscriber_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa

from digest.addresses import normalize_email
from digest.errors import SubscriberError
from digest.models import Cadence, Subscriber, SubscriberStatus
from digest.store.subscriber_rows import (
    DELETED_DOMAIN,
    Consent,
    check_weekday,
    checked_name,
    clean_rules,
    consent_values,
    insert_subscriber,
    load,
    not_deleted,
    read_time,
    reload,
    replace_rules,
    require,
    rules_by_subscriber,
    send_time_values,
    to_subscriber,
    utc,
)
from digest.store.tables import delivered_paper, delivery, rule, subscriber


@dataclass(frozen=True, slots=True)
class SubscriberInfo:
    """One line of ``digest subscribers``."""

    email: str
    status: str
    rules: list[str]
    cadence: str
    last_digest_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The contract shape of ``subscribers --json``."""
        return {
            "email": self.email,
            "status": self.status,
            "rules": list(self.rules),
            "cadence": self.cadence,
            "last_digest_at": self.last_digest_at.isoformat() if self.last_digest_at else None,
        }


class NewSubscriber(TypedDict, total=False):
    """The optional fields of :func:`add_subscriber` (a new subscriber is pending, daily, not managed)."""

    name: str | None
    status: SubscriberStatus
    cadence: Cadence
    weekday: int
    managed_by_config: bool
    consent: Consent | None
    send_time: str | None
    timezone: str | None


def add_subscriber(
    engine: sa.Engine, email: str, rules: Sequence[str], *, now: datetime, **fields: Unpack[NewSubscriber]
) -> Subscriber:
    """Store a new subscriber with its rules. SubscriberError if the address is invalid or already known;
    RuleError if a rule does not parse."""
    name = fields.get("name")
    status = fields.get("status", SubscriberStatus.PENDING)
    cadence = fields.get("cadence", Cadence.DAILY)
    weekday = fields.get("weekday", 0)
    managed_by_config = fields.get("managed_by_config", False)
    consent = fields.get("consent")
    address = normalize_email(email)
    queries = clean_rules(rules)
    clean_name = checked_name(name)
    when = utc(now)
    values: dict[str, Any] = {
        "email": address,
        "name": clean_name,
        "status": SubscriberStatus(status).value,
        "cadence": Cadence(cadence).value,
        "weekday": check_weekday(weekday),
        "managed_by_config": managed_by_config,
        **send_time_values(fields.get("send_time"), fields.get("timezone")),
        "created_at": when,
        "updated_at": when,
        "confirmed_at": when if status == SubscriberStatus.ACTIVE else None,
        "token_version": 0,
        **consent_values(consent),
    }
    try:
        with engine.begin() as conn:
            return reload(conn, insert_subscriber(conn, values, queries))
    except sa.exc.IntegrityError:
        raise SubscriberError(f"{address} is already a subscriber") from None


def get_subscriber(engine: sa.Engine, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id, or None."""
    with engine.connect() as conn:
        return load(conn, subscriber.c.id == subscriber_id)


def find_subscriber(engine: sa.Engine, email: str) -> Subscriber | None:
    """The subscriber with this address (any case or form of it), or None; None for an invalid address."""
    try:
        address = normalize_email(email)
    except SubscriberError:
        return None
    with engine.connect() as conn:
        return load(conn, subscriber.c.email == address)


def set_rules(
    engine: sa.Engine, subscriber_id: int, rules: Sequence[str], *, now: datetime, allow_managed: bool = False
) -> Subscriber:
    """Replace the subscriber's rules (validated: RuleError names the bad one).

    For a pending subscription whose rules change, ``token_version`` is bumped: a confirmation link mailed
    before confirms the rules it was sent with, never new ones.
    """
    queries = clean_rules(rules)
    with engine.begin() as conn:
        current = require(conn, subscriber_id, allow_managed=allow_managed)
        changed = [r.query for r in current.rules] != list(queries)
        replace_rules(conn, subscriber_id, queries)
        bump = 1 if changed and current.status == SubscriberStatus.PENDING else 0
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(updated_at=utc(now), token_version=subscriber.c.token_version + bump)
        )
        return reload(conn, subscriber_id)


def set_status(
    engine: sa.Engine,
    subscriber_id: int,
    status: SubscriberStatus,
    *,
    now: datetime,
    allow_managed: bool = False,
) -> Subscriber:
    """Move the subscriber to ``status``. Idempotent: the first unsubscribe time and confirm time are kept.

    An unsubscribe is allowed for config-managed subscribers whatever ``allow_managed`` says.
    """
    status = SubscriberStatus(status)
    when = utc(now)
    with engine.begin() as conn:
        current = require(
            conn, subscriber_id, allow_managed=allow_managed or status == SubscriberStatus.UNSUBSCRIBED
        )
        values: dict[str, Any] = {"status": status.value}
        if current.status != status:
            values["updated_at"] = when
        if status == SubscriberStatus.UNSUBSCRIBED and current.status != status:
            values["unsubscribed_at"] = when
        if status == SubscriberStatus.ACTIVE:
            values["unsubscribed_at"] = None
            values["hard_bounces"] = 0
            values["confirmed_at"] = sa.func.coalesce(subscriber.c.confirmed_at, when)
        conn.execute(sa.update(subscriber).where(subscriber.c.id == subscriber_id).values(**values))
        return reload(conn, subscriber_id)


def set_cadence(
    engine: sa.Engine,
    subscriber_id: int,
    cadence: Cadence,
    weekday: int,
    now: datetime,
    *,
    allow_managed: bool = False,
) -> Subscriber:
    """Daily or weekly (on ``weekday``, 0 = Monday)."""
    cadence = Cadence(cadence)
    day = check_weekday(weekday)
    with engine.begin() as conn:
        require(conn, subscriber_id, allow_managed=allow_managed)
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(cadence=cadence.value, weekday=day, updated_at=utc(now))
        )
        return reload(conn, subscriber_id)


def delete_subscriber_data(
    engine: sa.Engine, subscriber_id: int, now: datetime, *, allow_managed: bool = False
) -> None:
    """ "Delete all my data": see the module docstring for what is kept and why. Every mailed link dies."""
    when = utc(now)
    with engine.begin() as conn:
        current = require(conn, subscriber_id, allow_managed=allow_managed)
        conn.execute(sa.delete(rule).where(rule.c.subscriber_id == subscriber_id))
        conn.execute(sa.delete(delivered_paper).where(delivered_paper.c.subscriber_id == subscriber_id))
        # Final deliveries go; a delivery still in flight keeps its row (the run owns it) but loses the
        # SMTP reply, which often quotes the address.
        conn.execute(
            sa.delete(delivery).where(
                delivery.c.subscriber_id == subscriber_id,
                delivery.c.state.in_(["sent", "failed", "uncertain", "skipped"]),
            )
        )
        conn.execute(
            sa.update(delivery).where(delivery.c.subscriber_id == subscriber_id).values(last_reply=None)
        )
        was_unsubscribed = current.status == SubscriberStatus.UNSUBSCRIBED
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(
                email=f"deleted-{subscriber_id}@{DELETED_DOMAIN}",
                name=None,
                status=SubscriberStatus.UNSUBSCRIBED.value,
                managed_by_config=False,
                updated_at=when,
                unsubscribed_at=subscriber.c.unsubscribed_at if was_unsubscribed else when,
                last_digest_at=None,
                last_confirmation_sent_at=None,
                consent_ip=None,
                consent_user_agent=None,
                consent_form=None,
                token_version=subscriber.c.token_version + 1,
            )
        )


def listing(*extra: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """Subscribers (deleted ones left out) by address: the columns every list of them shows, then ``extra``.
    Both lists, ``digest subscribers`` and the console's search, start here."""
    return (
        sa.select(
            subscriber.c.id,
            subscriber.c.email,
            subscriber.c.status,
            subscriber.c.cadence,
            subscriber.c.last_digest_at,
            *extra,
        )
        .where(not_deleted())
        .order_by(subscriber.c.email)
    )


def list_subscribers(engine: sa.Engine) -> list[SubscriberInfo]:
    """Every subscriber (deleted ones excluded) by address, in two queries."""
    with engine.connect() as conn:
        rows = conn.execute(listing()).all()
        rules = rules_by_subscriber(conn, sa.select(subscriber.c.id).where(not_deleted()))
    return [
        SubscriberInfo(
            email=r.email,
            status=r.status,
            rules=[x.query for x in rules.get(r.id, [])],
            cadence=r.cadence,
            last_digest_at=read_time(r.last_digest_at),
        )
        for r in rows
    ]


def active_subscribers(engine: sa.Engine) -> list[Subscriber]:
    """Active subscribers with their rules, by id, in two queries (never one per subscriber)."""
    active = subscriber.c.status == SubscriberStatus.ACTIVE.value
    with engine.connect() as conn:
        rows = conn.execute(sa.select(subscriber).where(active).order_by(subscriber.c.id)).all()
        rules = rules_by_subscriber(conn, sa.select(subscriber.c.id).where(active))
    return [to_subscriber(r, rules.get(r.id, [])) for r in rows]
