"""Bulk subscribers: ``digest import`` writes many checked rows in one transaction with set-based SQL
(executemany in chunks, never a query per row); ``digest export`` reads them all back in two queries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import SubscriberStatus
from digest.store.subscriber_rows import not_deleted, rules_by_subscriber, utc
from digest.store.tables import rule, subscriber

CHUNK = 5000
#: An import never moves an address out of these: only its owner can come back (on the web page).
FINAL = frozenset({SubscriberStatus.UNSUBSCRIBED.value, SubscriberStatus.BOUNCED.value})


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One checked row of an import file."""

    email: str
    name: str | None
    rules: tuple[str, ...]
    cadence: str
    weekday: int
    send_time: str | None
    timezone: str | None
    status: str


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    kept: list[str] = field(default_factory=list)  # unsubscribed or bounced: left as they are
    managed: list[str] = field(default_factory=list)  # [[subscribers]] of the config: the file wins


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def import_rows(engine: sa.Engine, rows: Sequence[ImportRow], now: datetime) -> ImportResult:
    """Create or update every row in ONE transaction (all or nothing).

    Unsubscribed and bounced addresses are left untouched, and so are the config's own subscribers.
    """
    when, result = utc(now), ImportResult()
    with engine.begin() as conn:
        known = _known(conn, [r.email for r in rows])
        new = [r for r in rows if r.email not in known]
        changed: list[tuple[int, ImportRow]] = []
        for r in rows:
            if r.email not in known:
                continue
            sid, status, managed = known[r.email]
            if managed:
                result.managed.append(r.email)
            elif status in FINAL:
                result.kept.append(r.email)
            else:
                changed.append((sid, replace(r, status=_merged_status(status, r.status))))
        ids = _insert(conn, new, when)
        _update(conn, changed, when)
        _replace_rules(conn, [*zip(ids, new, strict=True), *changed])
    result.created, result.updated = len(new), len(changed)
    return result


def _merged_status(current: str, wanted: str) -> str:
    # An unconfirmed import (pending) does not send a confirmed reader back to pending.
    if wanted == SubscriberStatus.PENDING.value and current != SubscriberStatus.PENDING.value:
        return current
    return wanted


def _known(conn: sa.Connection, emails: Sequence[str]) -> dict[str, tuple[int, str, bool]]:
    out: dict[str, tuple[int, str, bool]] = {}
    query = sa.select(
        subscriber.c.email, subscriber.c.id, subscriber.c.status, subscriber.c.managed_by_config
    )
    for chunk in _chunks(emails):
        for email, sid, status, managed in conn.execute(query.where(subscriber.c.email.in_(list(chunk)))):
            out[email] = (sid, status, bool(managed))
    return out


def _values(r: ImportRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "cadence": r.cadence,
        "weekday": r.weekday,
        "send_time": r.send_time,
        "timezone": r.timezone,
        "status": r.status,
    }


_NEW_COLUMNS = (
    "email", "name", "cadence", "weekday", "send_time", "timezone", "status", "managed_by_config",
    "created_at", "updated_at", "confirmed_at", "unsubscribed_at", "hard_bounces", "token_version",
    "consent_at", "consent_source",
)  # fmt: skip


def _insert(conn: sa.Connection, rows: Sequence[ImportRow], when: datetime) -> list[int]:
    """Insert the new rows; their ids. Plain driver executemany with the timestamp converted once: SQLAlchemy's
    per-value processing (and RETURNING, a row at a time on SQLite) cost far more than the writes."""
    ids: list[int] = []
    stamp = _bound(conn, subscriber.c.created_at, when)
    lookup = sa.select(subscriber.c.email, subscriber.c.id)
    active, gone = SubscriberStatus.ACTIVE.value, SubscriberStatus.UNSUBSCRIBED.value
    for chunk in _chunks(rows):
        values = [
            (r.email, r.name, r.cadence, r.weekday, r.send_time, r.timezone, r.status, False, stamp, stamp,
             stamp if r.status == active else None, stamp if r.status == gone else None, 0, 0, stamp, "import")
            for r in chunk
        ]  # fmt: skip
        _executemany(conn, subscriber, _NEW_COLUMNS, values)
        where = subscriber.c.email.in_([r.email for r in chunk])
        found: dict[str, int] = {email: sid for email, sid in conn.execute(lookup.where(where))}
        ids.extend(found[r.email] for r in chunk)
    return ids


def _bound(conn: sa.Connection, column: sa.ColumnElement[Any], value: Any) -> Any:
    """``value`` as the driver gets it for ``column`` (SQLite keeps datetimes as text)."""
    process = column.type.bind_processor(conn.dialect)
    return process(value) if process else value


def _executemany(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], values: list[tuple[Any, ...]]
) -> None:
    """Insert ``values``: COPY on PostgreSQL (one stream, not a round trip per row), the driver's
    executemany on SQLite (in-process: no round trips to save)."""
    quote = conn.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY {quote(table.name)} ({names}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        return
    marks = ", ".join(["?"] * len(columns))
    conn.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", values)


def _update(conn: sa.Connection, rows: Sequence[tuple[int, ImportRow]], when: datetime) -> None:
    """Update the known rows set-based: the new values go into a temporary table (driver executemany),
    then ONE ``UPDATE ... FROM`` (one statement per row was a round trip per row on PostgreSQL)."""
    if not rows:
        return
    changes = sa.Table(
        "import_changes",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c.name, c.type) for c in _CHANGED),
        prefixes=["TEMPORARY"],
    )
    changes.create(conn)
    stamp = _bound(conn, subscriber.c.updated_at, when)
    active, gone = SubscriberStatus.ACTIVE.value, SubscriberStatus.UNSUBSCRIBED.value
    for chunk in _chunks(rows):
        values = [
            (sid, r.name, r.cadence, r.weekday, r.send_time, r.timezone, r.status,
             stamp if r.status == gone else None, stamp if r.status == active else None)
            for sid, r in chunk
        ]  # fmt: skip
        _executemany(conn, changes, ["id", *(c.name for c in _CHANGED)], values)
    new = changes.c
    conn.execute(
        sa.update(subscriber)
        .where(subscriber.c.id == new.id)
        .values(
            name=new.name,
            cadence=new.cadence,
            weekday=new.weekday,
            send_time=new.send_time,
            timezone=new.timezone,
            status=new.status,
            unsubscribed_at=new.unsubscribed_at,
            confirmed_at=sa.func.coalesce(subscriber.c.confirmed_at, new.confirmed_at),
            updated_at=when,
        )
    )
    changes.drop(conn)


_CHANGED = [
    subscriber.c[name]
    for name in (
        "name",
        "cadence",
        "weekday",
        "send_time",
        "timezone",
        "status",
        "unsubscribed_at",
        "confirmed_at",
    )
]


def _replace_rules(conn: sa.Connection, rows: Sequence[tuple[int, ImportRow]]) -> None:
    ids = [sid for sid, _ in rows]
    for chunk in _chunks(ids):
        conn.execute(sa.delete(rule).where(rule.c.subscriber_id.in_(list(chunk))))
    values = [(sid, i, "", q) for sid, r in rows for i, q in enumerate(r.rules)]
    for chunk in _chunks(values):
        _executemany(conn, rule, ("subscriber_id", "position", "name", "query"), list(chunk))


def export_rows(engine: sa.Engine) -> list[ImportRow]:
    """Every subscriber (deleted ones excepted) with their rules, by id: what ``digest export`` writes."""
    with engine.connect() as conn:
        subs = conn.execute(sa.select(subscriber).where(not_deleted()).order_by(subscriber.c.id)).all()
        rules = rules_by_subscriber(conn, sa.select(subscriber.c.id).where(not_deleted()))
    return [
        ImportRow(
            s.email,
            s.name,
            tuple(r.query for r in rules.get(s.id, [])),
            s.cadence,
            s.weekday,
            s.send_time,
            s.timezone,
            s.status,
        )
        for s in subs
    ]
