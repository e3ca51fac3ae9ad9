"""Shared parts of the subscriber aggregate: row <-> Subscriber, the rules of many subscribers in one query,
input cleaning and the limits. Used by ``subscribers`` (reads and admin writes), ``signup`` (the web form's
double opt-in) and ``config_sync`` (``[[subscribers]]``); no public function here opens a transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from digest.errors import SubscriberError
from digest.models import Cadence, Rule, Subscriber, SubscriberStatus
from digest.rules import validate_rules
from digest.sendtimes import parse_send_time, parse_timezone
from digest.store.tables import rule, subscriber

MAX_RULES = 20
MAX_NAME_LENGTH = 100
DELETED_DOMAIN = "deleted.invalid"


@dataclass(frozen=True, slots=True)
class Consent:
    """How and when someone asked for the digest (the proof of opt-in)."""

    at: datetime
    source: str  # "web", "cli", "config"
    ip: str | None = None
    user_agent: str | None = None
    form: dict[str, Any] | None = None


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware 'now' (UTC)")
    return value.astimezone(UTC)


def read_time(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we write is UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def checked_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = " ".join(name.split())
    if any(ord(c) < 32 for c in cleaned):
        raise SubscriberError("the name must be one line of text")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise SubscriberError(f"the name is longer than {MAX_NAME_LENGTH} characters; shorten it")
    return cleaned or None


def clean_rules(rules: Sequence[str]) -> list[str]:
    queries = [q.strip() for q in rules if q.strip()]
    if not queries:
        raise SubscriberError('give at least one rule, like: diffusion OR "flow matching"')
    if len(queries) > MAX_RULES:
        raise SubscriberError(f"at most {MAX_RULES} rules per subscriber; combine some with OR")
    return list(validate_rules(queries))


def check_weekday(value: int) -> int:
    if not 0 <= value <= 6:
        raise SubscriberError(f"weekday must be 0 (Monday) to 6 (Sunday), got {value}")
    return value


def send_time_values(send_time: str | None, timezone: str | None) -> dict[str, str | None]:
    """The checked ``send_time`` and ``timezone`` columns (SubscriberError for a bad one); a zone without
    a send time is not kept: who follows the cron follows its zone."""
    hhmm = parse_send_time(send_time) if send_time else None
    zone = parse_timezone(timezone) if timezone and hhmm else None
    return {"send_time": hhmm, "timezone": zone}


_RULES_BASE = sa.select(rule.c.subscriber_id, rule.c.name, rule.c.query).order_by(
    rule.c.subscriber_id, rule.c.position, rule.c.id
)
_RULES_OF = _RULES_BASE.where(rule.c.subscriber_id.in_(sa.bindparam("ids", expanding=True)))


def rules_by_subscriber(conn: sa.Connection, ids: sa.Select[Any] | Sequence[int]) -> dict[int, list[Rule]]:
    """Every rule of the given subscribers, in one query."""
    if isinstance(ids, sa.Select):
        rows = conn.execute(_RULES_BASE.where(rule.c.subscriber_id.in_(ids)))
    else:  # a list of ids: the prebuilt statement (this runs for every delivery batch)
        rows = conn.execute(_RULES_OF, {"ids": list(ids)})
    out: dict[int, list[Rule]] = defaultdict(list)
    for sid, name, query_text in rows:
        out[sid].append(Rule(query=query_text, name=name or ""))
    return out


# Enum(value) is a metaclass call per row, and a planning run reads a million rows: a dict lookup (the
# enum call still reports a value that is not in the dict).
CADENCES: dict[str, Cadence] = {c.value: c for c in Cadence}
_STATUSES: dict[str, SubscriberStatus] = {s.value: s for s in SubscriberStatus}


def to_subscriber(row: sa.Row[Any], rules: Sequence[Rule]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        rules=tuple(rules),
        name=row.name,
        status=_STATUSES.get(row.status) or SubscriberStatus(row.status),
        cadence=CADENCES.get(row.cadence) or Cadence(row.cadence),
        weekday=row.weekday,
        managed_by_config=bool(row.managed_by_config),
        token_version=row.token_version,
        send_time=row.send_time,
        timezone=row.timezone,
    )


def load(conn: sa.Connection, where: sa.ColumnElement[bool]) -> Subscriber | None:
    row = conn.execute(sa.select(subscriber).where(where)).first()
    if row is None:
        return None
    return to_subscriber(row, rules_by_subscriber(conn, [row.id]).get(row.id, []))


def reload(conn: sa.Connection, subscriber_id: int) -> Subscriber:
    """The subscriber just written in this transaction (it exists: we hold the write)."""
    sub = load(conn, subscriber.c.id == subscriber_id)
    assert sub is not None
    return sub


def insert_subscriber(conn: sa.Connection, values: dict[str, Any], queries: Sequence[str]) -> int:
    """Insert one subscriber row with its rules; its id (IntegrityError when the address exists)."""
    new_id: int = conn.execute(sa.insert(subscriber).values(**values).returning(subscriber.c.id)).scalar_one()
    replace_rules(conn, new_id, queries)
    return new_id


def require(conn: sa.Connection, subscriber_id: int, *, allow_managed: bool) -> Subscriber:
    sub = load(conn, subscriber.c.id == subscriber_id)
    if sub is None or sub.email.endswith("@" + DELETED_DOMAIN):
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    if sub.managed_by_config and not allow_managed:
        raise SubscriberError(
            f"{sub.email} is managed in the configuration file; change it there (the operator does)"
        )
    return sub


def replace_rules(conn: sa.Connection, subscriber_id: int, queries: Sequence[str]) -> None:
    conn.execute(sa.delete(rule).where(rule.c.subscriber_id == subscriber_id))
    if queries:
        conn.execute(
            sa.insert(rule),
            [
                {"subscriber_id": subscriber_id, "position": i, "name": "", "query": q}
                for i, q in enumerate(queries)
            ],
        )


def consent_values(consent: Consent | None) -> dict[str, Any]:
    if consent is None:
        return {}
    return {
        "consent_at": utc(consent.at),
        "consent_source": consent.source[:64],
        "consent_ip": consent.ip[:64] if consent.ip else None,
        "consent_user_agent": consent.user_agent[:300] if consent.user_agent else None,
        "consent_form": consent.form,
    }


def not_deleted() -> sa.ColumnElement[bool]:
    deleted: sa.ColumnElement[bool] = subscriber.c.email.like(f"%@{DELETED_DOMAIN}")
    return sa.not_(deleted)
