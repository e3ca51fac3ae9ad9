"""``[[subscribers]]`` in config.toml -> the database: the operator's list, synced on start and before
every run (see :func:`sync_config_subscribers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.addresses import normalize_email
from digest.config import WEEKDAYS, SubscriberEntry
from digest.errors import SubscriberError
from digest.models import Cadence, SubscriberStatus
from digest.store.subscriber_rows import (
    checked_name,
    clean_rules,
    insert_subscriber,
    replace_rules,
    rules_by_subscriber,
    send_time_values,
    utc,
)
from digest.store.tables import subscriber


@dataclass(slots=True)
class SyncResult:
    """What :func:`sync_config_subscribers` changed (addresses)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # web subscribers that became config-managed
    unsubscribed: list[str] = field(default_factory=list)  # managed ones no longer in the config
    kept_unsubscribed: list[str] = field(default_factory=list)  # in the config but unsubscribed themselves
    kept_bounced: list[str] = field(default_factory=list)  # in the config but their address bounces
    unchanged: int = 0


def sync_config_subscribers(
    engine: sa.Engine, entries: Sequence[SubscriberEntry], now: datetime
) -> SyncResult:
    """Make the database agree with ``[[subscribers]]`` in the config (run at start).

    Config entries become active, config-managed subscribers with the config's rules and cadence; a web
    subscriber listed in the config becomes config-managed. Managed subscribers no longer listed are
    unsubscribed and handed back to the web (not managed any more). Web subscribers not in the config are
    never touched. Bad addresses or rules raise before anything changes.

    The config never overrides what the address itself said: a listed address that unsubscribed (through a
    mailed link, managed or not) stays unsubscribed (``kept_unsubscribed``), and one whose mail bounced stays
    bounced (``kept_bounced``) instead of being mailed again on every start; both are left as they are and
    reported, so the operator can remove them from the file.

    Two processes may sync at once (two ``serve`` starting on one PostgreSQL): when the other one inserts
    the same new address first, the unique key refuses ours and the sync runs once more, now seeing it.
    """
    when = utc(now)
    wanted: dict[str, tuple[SubscriberEntry, list[str]]] = {}
    for entry in entries:
        address = normalize_email(entry.email)
        if address in wanted:
            raise SubscriberError(f"{address} is listed twice in [[subscribers]]; keep one entry")
        wanted[address] = (entry, clean_rules(entry.rules))
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                return _sync(conn, wanted, when)
        except sa.exc.IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Listed:
    """One ``[[subscribers]]`` entry, checked: what the database must say about this address."""

    address: str
    queries: list[str]
    name: str | None
    cadence: str
    weekday: int
    send_time: str | None = None
    timezone: str | None = None

    @classmethod
    def of(cls, address: str, entry: SubscriberEntry, queries: list[str]) -> _Listed:
        when = send_time_values(entry.send_time, entry.timezone)
        return cls(
            address,
            queries,
            checked_name(entry.name),
            Cadence(entry.cadence).value,
            WEEKDAYS.index(entry.weekday),
            when["send_time"],
            when["timezone"],
        )


def _sync(
    conn: sa.Connection, wanted: dict[str, tuple[SubscriberEntry, list[str]]], when: datetime
) -> SyncResult:
    result = SyncResult()
    rows = {
        r.email: r
        for r in conn.execute(
            sa.select(subscriber).where(
                sa.or_(subscriber.c.managed_by_config.is_(True), subscriber.c.email.in_(list(wanted)))
            )
        )
    }
    current_rules = rules_by_subscriber(conn, [r.id for r in rows.values()])
    for address, (entry, queries) in wanted.items():
        listed = _Listed.of(address, entry, queries)
        row = rows.get(address)
        if row is None:
            _insert(conn, listed, when)
            result.created.append(address)
        # An unsubscribe is always honoured, and a dead address is not revived by restarting the service.
        elif row.status == SubscriberStatus.UNSUBSCRIBED.value:
            result.kept_unsubscribed.append(address)
        elif row.status == SubscriberStatus.BOUNCED.value:
            result.kept_bounced.append(address)
        elif not _update(conn, row, [x.query for x in current_rules.get(row.id, [])], listed, when):
            result.unchanged += 1
        else:
            (result.updated if row.managed_by_config else result.adopted).append(address)
    _release_unlisted(conn, rows, wanted, when, result)
    return result


def _insert(conn: sa.Connection, listed: _Listed, when: datetime) -> None:
    values = {
        "email": listed.address,
        "name": listed.name,
        "status": SubscriberStatus.ACTIVE.value,
        "cadence": listed.cadence,
        "weekday": listed.weekday,
        "send_time": listed.send_time,
        "timezone": listed.timezone,
        "managed_by_config": True,
        "created_at": when,
        "updated_at": when,
        "confirmed_at": when,
        "token_version": 0,
        "consent_at": when,
        "consent_source": "config",
    }
    insert_subscriber(conn, values, listed.queries)


def _update(conn: sa.Connection, row: Any, have: list[str], listed: _Listed, when: datetime) -> bool:
    """Make a listed row what the config says; False when it already was."""
    same = (
        row.managed_by_config
        and row.status == SubscriberStatus.ACTIVE.value
        and row.cadence == listed.cadence
        and row.weekday == listed.weekday
        and (row.send_time, row.timezone) == (listed.send_time, listed.timezone)
        and row.name == listed.name
        and have == listed.queries
    )
    if same:
        return False
    values: dict[str, Any] = {
        "name": listed.name,
        "cadence": listed.cadence,
        "weekday": listed.weekday,
        "send_time": listed.send_time,
        "timezone": listed.timezone,
        "managed_by_config": True,
        "updated_at": when,
    }
    if row.status != SubscriberStatus.ACTIVE.value:  # pending or paused: the operator's list wins
        values.update(status=SubscriberStatus.ACTIVE.value, unsubscribed_at=None)
        values["confirmed_at"] = row.confirmed_at or when
    if not row.managed_by_config:
        values.update(consent_at=when, consent_source="config")
    conn.execute(sa.update(subscriber).where(subscriber.c.id == row.id).values(**values))
    if have != listed.queries:
        replace_rules(conn, row.id, listed.queries)
    return True


def _release_unlisted(
    conn: sa.Connection,
    rows: dict[str, Any],
    wanted: Mapping[str, object],
    when: datetime,
    result: SyncResult,
) -> None:
    """Managed subscribers no longer in the config: unsubscribed and handed back to the web."""
    gone = [r.id for a, r in rows.items() if r.managed_by_config and a not in wanted]
    if not gone:
        return
    conn.execute(
        sa.update(subscriber)
        .where(subscriber.c.id.in_(gone))
        .values(
            status=SubscriberStatus.UNSUBSCRIBED.value,
            managed_by_config=False,
            updated_at=when,
            unsubscribed_at=sa.func.coalesce(subscriber.c.unsubscribed_at, when),
        )
    )
    result.unsubscribed.extend(
        sorted(
            a
            for a, r in rows.items()
            if r.managed_by_config and a not in wanted and r.status != SubscriberStatus.UNSUBSCRIBED.value
        )
    )
