"""Planning's side of the outbox: what is already promised, the new rows, and the lock that serialises it.

A plan reads what each subscriber has been sent or promised and then writes its outbox rows; the planning
lock keeps two runs (of different dates, in different processes) from doing that at the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.models import Cadence, DeliveryState, Subscriber, SubscriberStatus
from digest.sendtimes import Schedule
from digest.store.subscriber_rows import CADENCES, rules_by_subscriber, to_subscriber
from digest.store.tables import delivery, run, subscriber


@dataclass(frozen=True)
class PlannedDelivery:
    subscriber_id: int
    paper_ids: Sequence[str]  # all matched, in mail order; an empty list means skipped (nothing new)


def write_plan(
    engine: sa.Engine, run_id: int, plan: Iterable[PlannedDelivery], now: datetime, *, skip_empty: bool = True
) -> int:
    """Insert the outbox rows of a run and mark it planned, in one transaction. Returns rows offered.

    A subscriber with nothing new is ``skipped`` (``skip_empty``) or gets an empty digest (pending). Each row
    is dated by the run's date (the subscriber's local date); a subscriber who already has a row for that
    date keeps it and gets no second one (``UNIQUE(subscriber_id, local_date)``), so slots may repeat.
    """
    with engine.begin() as conn:
        offered = _write(conn, run_id, plan, now, skip_empty)
        conn.execute(run.update().where(run.c.id == run_id).values(planned_at=now, heartbeat_at=now))
    return offered


def run_row_date(engine: sa.Engine, run_id: int) -> date:
    """The date of run ``run_id``: the local date of its outbox rows."""
    with engine.connect() as conn:
        day: date = conn.execute(sa.select(run.c.run_date).where(run.c.id == run_id)).scalar_one()
    return day


def write_chunk(
    engine: sa.Engine, run_id: int, plan: Iterable[PlannedDelivery], now: datetime, *, skip_empty: bool = True
) -> int:
    """Insert one chunk of a run's outbox rows (as ``write_plan``, in its own transaction) and beat the run's
    heartbeat: a long plan is not taken for a dead one. The run is not marked planned (``mark_planned``)."""
    with engine.begin() as conn:
        offered = _write(conn, run_id, plan, now, skip_empty)
        conn.execute(run.update().where(run.c.id == run_id).values(heartbeat_at=now))
    return offered


def mark_planned(engine: sa.Engine, run_id: int, now: datetime) -> None:
    """Every chunk of the run's plan is written: a rerun plans only subscribers added since."""
    with engine.begin() as conn:
        conn.execute(run.update().where(run.c.id == run_id).values(planned_at=now, heartbeat_at=now))


def _write(
    conn: sa.Connection, run_id: int, plan: Iterable[PlannedDelivery], now: datetime, skip_empty: bool
) -> int:
    local_date: date = conn.execute(sa.select(run.c.run_date).where(run.c.id == run_id)).scalar_one()
    rows = [
        {
            "run_id": run_id,
            "subscriber_id": p.subscriber_id,
            "local_date": local_date,
            "state": DeliveryState.PENDING if p.paper_ids or not skip_empty else DeliveryState.SKIPPED,
            "attempts": 0,
            "paper_ids": list(p.paper_ids),
            "updated_at": now,
        }
        for p in plan
    ]
    for start in range(0, len(rows), 5000):
        _insert_new(conn, rows[start : start + 5000])
    return len(rows)


def _insert_new(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    keys = ["subscriber_id", "local_date"]
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(delivery).on_conflict_do_nothing(index_elements=keys), rows)
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite_insert(delivery).on_conflict_do_nothing(index_elements=keys), rows)
    else:  # pragma: no cover - the two supported databases are above
        conn.execute(delivery.insert(), rows)


def in_flight_papers(engine: sa.Engine, subscriber_ids: Sequence[int]) -> dict[int, set[str]]:
    """Papers already promised to a subscriber by an unfinished or uncertain outbox row of any run.

    Planning excludes them, so a retry still waiting from an earlier run and today's digest never carry the
    same paper; uncertain ones count too, since they may have arrived (RFC 1047).
    """
    waiting = (DeliveryState.PENDING, DeliveryState.RETRY, DeliveryState.SENDING, DeliveryState.UNCERTAIN)
    out: dict[int, set[str]] = {}
    with engine.connect() as conn:
        for start in range(0, len(subscriber_ids), 5000):
            chunk = list(subscriber_ids[start : start + 5000])
            rows = conn.execute(
                sa.select(delivery.c.subscriber_id, delivery.c.paper_ids).where(
                    delivery.c.subscriber_id.in_(chunk), delivery.c.state.in_(waiting)
                )
            )
            for sid, ids in rows:
                out.setdefault(sid, set()).update(ids or [])
    return out


_UNPLANNED = (
    sa.select(subscriber.c.id, subscriber.c.cadence, subscriber.c.weekday)
    .where(
        subscriber.c.status == SubscriberStatus.ACTIVE.value,
        subscriber.c.id > sa.bindparam("after"),
        # No outbox row for that local date yet (the index of the unique key answers it).
        ~sa.exists().where(
            delivery.c.subscriber_id == subscriber.c.id, delivery.c.local_date == sa.bindparam("day")
        ),
    )
    .order_by(subscriber.c.id)
    .limit(sa.bindparam("size"))
)


def unplanned_page(engine: sa.Engine, day: date, after: int, size: int) -> list[Schedule]:
    """Up to ``size`` active subscribers with an id above ``after`` who have no outbox row for ``day``, by
    id (keyset pagination: the next page starts after the last id of this one; no OFFSET to rescan)."""
    with engine.connect() as conn:
        rows = conn.execute(_UNPLANNED, {"after": after, "day": day, "size": size})
        return [Schedule(r.id, CADENCES.get(r.cadence) or Cadence(r.cadence), r.weekday) for r in rows]


def active_with_rules(engine: sa.Engine, ids: Sequence[int]) -> list[Subscriber]:
    """The subscribers of ``ids`` that are still active, with their rules, by id (two queries)."""
    if not ids:
        return []
    query = sa.select(subscriber).where(
        subscriber.c.id.in_(list(ids)), subscriber.c.status == SubscriberStatus.ACTIVE.value
    )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(subscriber.c.id)).all()
        rules = rules_by_subscriber(conn, [r.id for r in rows])
    return [to_subscriber(r, rules.get(r.id, [])) for r in rows]


#: The key of the PostgreSQL advisory lock that serialises planning (any constant, unique to this app).
PLANNING_LOCK_KEY = 0x50_44_69_67  # "PDig"


@contextmanager
def planning_lock(engine: sa.Engine) -> Iterator[None]:
    """Serialise planning across processes and run dates.

    A plan reads what each subscriber has been sent or promised and then writes its outbox rows; two runs
    for different dates planning at the same moment would each miss the other's rows and could promise the
    same paper twice. PostgreSQL: a session advisory lock. SQLite (one machine by nature): an exclusive
    lock on a file beside the database.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({PLANNING_LOCK_KEY})")
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({PLANNING_LOCK_KEY})")
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # one connection, one process: nothing to serialise
        return
    import fcntl

    with open(f"{database}.plan-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
