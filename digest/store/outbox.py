"""Runs and the delivery outbox: the state that makes sending crash-safe and never twice.

- The ``run`` row for a date is the lock: one live owner at a time; a dead owner's run is taken over.
- A ``delivery`` row per (run, subscriber) is written before any send (planning, one transaction).
- Rows are claimed with a conditional update (``pending|retry -> sending``); only one process wins a row.
- ``sent`` and the ``delivered_paper`` rows are written in the same transaction.
- A row left in ``sending`` by a dead owner becomes ``uncertain`` (RFC 1047): reported, never resent blindly.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.errors import RunLockedError
from digest.models import DeliveryState
from digest.store.bulk import insert_delivered, update_outcomes
from digest.store.tables import alert, delivery, run, subscriber

#: The delivery loop holds one connection for its many small transactions (a fresh pool checkout per
#: message costs more than the claim itself); everything else passes the engine.
Bind = sa.Engine | sa.Connection


@contextmanager
def _tx(bind: Bind) -> Iterator[sa.Connection]:
    """One transaction on an engine or on a held connection (committed at the end either way)."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


#: A run whose owner has not written a heartbeat for this long is considered dead.
STALE_AFTER = timedelta(minutes=3)


_NONCE = uuid.uuid4().hex[:8]


def this_owner() -> str:
    """``host:pid:nonce``: the nonce tells a restarted process (same host name, same pid, e.g. pid 1 in a
    container) from the one that died holding a run."""
    return f"{socket.gethostname()}:{os.getpid()}:{_NONCE}"


def _owner_alive(owner: str | None) -> bool:
    """False when the owner is a process on this host that no longer exists."""
    if not owner or ":" not in owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) == 3 and not parts[1].isdigit():  # a host name with a colon, no nonce
        parts = owner.rsplit(":", 1)
    host, pid = parts[0], parts[1]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the heartbeat can tell
    if int(pid) == os.getpid():
        return owner == this_owner()  # our pid, but an earlier process's nonce: that one is gone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunClaim:
    id: int
    run_date: date
    planned: bool
    finished: bool  # the run had already finished: nothing new to send
    took_over: bool


def claim_run(engine: sa.Engine, run_date: date, now: datetime, owner: str | None = None) -> RunClaim:
    """Take the run for ``run_date``; RunLockedError while a live process holds it."""
    owner = owner or this_owner()
    for _ in range(3):
        with engine.begin() as conn:
            row = conn.execute(sa.select(run).where(run.c.run_date == run_date)).mappings().first()
            if row is None:
                try:
                    with conn.begin_nested():
                        new_id = conn.execute(
                            run.insert().values(
                                run_date=run_date,
                                status="running",
                                owner=owner,
                                started_at=now,
                                heartbeat_at=now,
                                papers_fetched=0,
                            )
                        ).inserted_primary_key
                except sa.exc.IntegrityError:
                    continue  # another process created it first: read it again
                assert new_id is not None
                return RunClaim(int(new_id[0]), run_date, planned=False, finished=False, took_over=False)
            if row["status"] == "done":
                return RunClaim(row["id"], run_date, planned=True, finished=True, took_over=False)
            heartbeat = _aware(row["heartbeat_at"])
            if (
                row["status"] == "running"
                and row["owner"] != owner
                and _owner_alive(row["owner"])
                and heartbeat is not None
                and now - heartbeat < STALE_AFTER
            ):
                raise RunLockedError(
                    f"the run for {run_date} is in progress in another process ({row['owner']}); nothing to do here"
                )
            # Failed, unfinished, or held by a dead process: take it over with a conditional update.
            taken = conn.execute(
                run.update()
                .where(run.c.id == row["id"], run.c.status == row["status"], _same(run.c.owner, row["owner"]))
                .values(status="running", owner=owner, heartbeat_at=now, error=None)
            ).rowcount
            if taken != 1:
                continue
            # Whatever the dead owner left in flight may or may not have reached the server.
            conn.execute(
                delivery.update()
                .where(delivery.c.run_id == row["id"], delivery.c.state == DeliveryState.SENDING)
                .values(
                    state=DeliveryState.UNCERTAIN,
                    last_reply="process stopped while sending; not resent (RFC 1047)",
                    updated_at=now,
                )
            )
            return RunClaim(
                row["id"], run_date, planned=row["planned_at"] is not None, finished=False, took_over=True
            )
    raise RunLockedError(f"could not take the run for {run_date}: it changed hands repeatedly")


def _same(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def heartbeat(bind: Bind, run_id: int, now: datetime, owner: str | None = None) -> None:
    """Tell other processes this run is alive (only while ``owner`` still holds it)."""
    query = run.update().where(run.c.id == run_id, run.c.status == "running")
    if owner is not None:
        query = query.where(run.c.owner == owner)
    with _tx(bind) as conn:
        conn.execute(query.values(heartbeat_at=now))


def finish_run(
    engine: sa.Engine,
    run_id: int,
    status: str,
    now: datetime,
    *,
    owner: str | None = None,
    papers_fetched: int | None = None,
    error: str | None = None,
    report: dict[str, Any] | None = None,
) -> bool:
    """Close the run; with ``owner``, only if that process still holds it (False when it lost the run)."""
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now, "error": error}
    if papers_fetched is not None:
        values["papers_fetched"] = papers_fetched
    if report is not None:
        values["report"] = report
    query = run.update().where(run.c.id == run_id)
    if owner is not None:  # only while this process still holds the run
        query = query.where(run.c.owner == owner, run.c.status == "running")
    with engine.begin() as conn:
        return bool(conn.execute(query.values(**values)).rowcount)


def last_run(engine: sa.Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(run).order_by(run.c.run_date.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


@dataclass(frozen=True)
class PlannedDelivery:
    subscriber_id: int
    paper_ids: Sequence[str]  # all matched, in mail order; an empty list means skipped (nothing new)


def write_plan(
    engine: sa.Engine, run_id: int, plan: Iterable[PlannedDelivery], now: datetime, *, skip_empty: bool = True
) -> int:
    """Insert the outbox rows of a run and mark it planned, in one transaction. Returns rows written.

    A subscriber with nothing new is ``skipped`` (``skip_empty``) or gets an empty digest (pending).
    """
    rows = [
        {
            "run_id": run_id,
            "subscriber_id": p.subscriber_id,
            "state": DeliveryState.PENDING if p.paper_ids or not skip_empty else DeliveryState.SKIPPED,
            "attempts": 0,
            "paper_ids": list(p.paper_ids),
            "updated_at": now,
        }
        for p in plan
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(delivery.insert(), rows[start : start + 5000])
        conn.execute(run.update().where(run.c.id == run_id).values(planned_at=now, heartbeat_at=now))
    return len(rows)


@dataclass(frozen=True)
class Claimed:
    id: int
    run_id: int
    subscriber_id: int
    paper_ids: list[str]
    attempts: int
    first_attempt_at: datetime | None


@dataclass(frozen=True)
class Due:
    """An outbox row that is due (pending, or retry whose time has come); not claimed yet."""

    id: int
    run_id: int
    subscriber_id: int
    paper_ids: list[str]
    state: str
    attempts: int = 0
    first_attempt_at: datetime | None = None
    run_date: date | None = None  # the date of the digest this row belongs to


def due_deliveries(
    bind: Bind, run_ids: Sequence[int], now: datetime, limit: int, after_id: int = 0
) -> list[Due]:
    """Up to ``limit`` due rows with ids above ``after_id``, in id order. Reading claims nothing: see ``claim_one``.

    The delivery loop pages with ``after_id`` so each query starts where the last batch ended instead of
    stepping over every row already sent (which made a large run quadratic).
    """
    params = {"after": after_id, "runs": list(run_ids), "now": now, "limit": limit}
    with _tx(bind) as conn:
        return [
            Due(
                r.id,
                r.run_id,
                r.subscriber_id,
                list(r.paper_ids or []),
                r.state,
                r.attempts,
                _aware(r.first_attempt_at),
                r.run_date,
            )
            for r in conn.execute(_DUE, params)
        ]


# Prebuilt with expanding parameters: it runs for every batch.
_DUE = (
    sa.select(
        delivery.c.id,
        delivery.c.run_id,
        delivery.c.subscriber_id,
        delivery.c.paper_ids,
        delivery.c.state,
        delivery.c.attempts,
        delivery.c.first_attempt_at,
        run.c.run_date,
    )
    .join(run, run.c.id == delivery.c.run_id)
    .where(
        delivery.c.id > sa.bindparam("after"),
        delivery.c.run_id.in_(sa.bindparam("runs", expanding=True)),
        sa.or_(
            delivery.c.state == DeliveryState.PENDING,
            sa.and_(
                delivery.c.state == DeliveryState.RETRY, delivery.c.next_attempt_at <= sa.bindparam("now")
            ),
        ),
    )
    .order_by(delivery.c.id)
    .limit(sa.bindparam("limit"))
)


_CLAIM = (
    delivery.update()
    .where(
        delivery.c.id == sa.bindparam("row_id"),
        delivery.c.state == sa.bindparam("seen_state"),
        # The attempt count too: a row another process claimed and put back in `retry` since we read it
        # must not be sent again now (its backoff) nor with a stale count.
        delivery.c.attempts == sa.bindparam("seen_attempts"),
    )
    .values(
        state=DeliveryState.SENDING,
        attempts=delivery.c.attempts + 1,
        first_attempt_at=sa.func.coalesce(delivery.c.first_attempt_at, sa.bindparam("now")),
        updated_at=sa.bindparam("now"),
    )
)


def claim_one(bind: Bind, row: Due, now: datetime) -> Claimed | None:
    """``pending|retry -> sending`` for one row, conditionally: None when another process got there first.

    One UPDATE, so on an AUTOCOMMIT connection (``autocommit_connection``) it is its own transaction: one
    round trip to PostgreSQL instead of three (BEGIN, UPDATE, COMMIT), one statement for SQLite.
    """
    params = {"row_id": row.id, "seen_state": row.state, "seen_attempts": row.attempts, "now": now}
    if (
        isinstance(bind, sa.Connection)
        and bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    ):
        won = bind.execute(_CLAIM, params).rowcount == 1
    else:
        with _tx(bind) as conn:
            won = conn.execute(_CLAIM, params).rowcount == 1
    if not won:
        return None
    # The row was exactly as read (state and attempts matched), so its new values follow from the read ones.
    return Claimed(
        row.id, row.run_id, row.subscriber_id, row.paper_ids, row.attempts + 1, row.first_attempt_at or now
    )


def next_retry_at(bind: Bind, run_ids: Sequence[int]) -> datetime | None:
    with _tx(bind) as conn:
        value = conn.execute(
            sa.select(sa.func.min(delivery.c.next_attempt_at)).where(
                delivery.c.run_id.in_(run_ids), delivery.c.state == DeliveryState.RETRY
            )
        ).scalar()
    return _aware(value)


@dataclass
class Outcome:
    """What happened to one claimed delivery, to be recorded."""

    claimed: Claimed
    state: DeliveryState
    reply: str
    delivered: Sequence[str] = ()  # paper ids shown in the sent mail
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    permanent_failure: bool = False


@dataclass
class Recorded:
    bounced: list[int] = field(default_factory=list)


def record_outcomes(
    bind: Bind, outcomes: Sequence[Outcome], now: datetime, *, hard_bounce_limit: int
) -> Recorded:
    """Write the results of a batch in one transaction: ``sent`` together with its ``delivered_paper`` rows."""
    result = Recorded()
    if not outcomes:
        return result
    rows = [
        {
            "row_id": o.claimed.id,
            "new_state": o.state,
            "reply": o.reply[:1000],
            "msg_id": o.message_id,
            "next_at": o.next_attempt_at,
            "now": now,
        }
        for o in outcomes
    ]
    delivered_rows = [
        {
            "subscriber_id": o.claimed.subscriber_id,
            "paper_id": pid,
            "run_id": o.claimed.run_id,
            "delivered_at": now,
        }
        for o in outcomes
        if o.state == DeliveryState.SENT
        for pid in o.delivered
    ]
    sent_subscribers = sorted({o.claimed.subscriber_id for o in outcomes if o.state == DeliveryState.SENT})
    with _tx(bind) as conn:
        update_outcomes(conn, rows)  # one statement per table on PostgreSQL (digest/store/bulk.py)
        insert_delivered(conn, delivered_rows)
        if sent_subscribers:
            conn.execute(
                subscriber.update()
                .where(subscriber.c.id.in_(sent_subscribers))
                .values(last_digest_at=now, hard_bounces=0)
            )
        for o in outcomes:
            if not o.permanent_failure:
                continue
            bounced = conn.execute(
                subscriber.update()
                .where(subscriber.c.id == o.claimed.subscriber_id)
                .values(hard_bounces=subscriber.c.hard_bounces + 1, updated_at=now)
                .returning(subscriber.c.hard_bounces)
            ).scalar()
            if bounced is not None and bounced >= hard_bounce_limit:
                conn.execute(
                    subscriber.update()
                    .where(subscriber.c.id == o.claimed.subscriber_id, subscriber.c.status == "active")
                    .values(status="bounced", updated_at=now)
                )
                result.bounced.append(o.claimed.subscriber_id)
    return result


def release(bind: Bind, claimed: Sequence[Claimed], now: datetime, reason: str) -> None:
    """Give back rows that were claimed but never handed to the server (nothing was sent)."""
    if not claimed:
        return
    with _tx(bind) as conn:
        conn.execute(
            delivery.update()
            .where(delivery.c.id.in_([c.id for c in claimed]), delivery.c.state == DeliveryState.SENDING)
            .values(
                state=DeliveryState.PENDING,
                attempts=sa.case((delivery.c.attempts > 0, delivery.c.attempts - 1), else_=0),
                last_reply=reason[:1000],
                updated_at=now,
            )
        )


def retry_runs(engine: sa.Engine, since: datetime) -> list[int]:
    """Earlier runs whose outbox still holds work: retry rows younger than the deadline, and pending rows of
    runs that no live process holds (a run that failed or was interrupted after planning)."""
    abandoned = sa.and_(
        delivery.c.state == DeliveryState.PENDING,
        run.c.status != "running",
        run.c.started_at >= since,
    )
    waiting = sa.and_(delivery.c.state == DeliveryState.RETRY, delivery.c.first_attempt_at >= since)
    query = (
        sa.select(delivery.c.run_id)
        .join(run, run.c.id == delivery.c.run_id)
        .where(sa.or_(waiting, abandoned))
        .distinct()
    )
    with engine.connect() as conn:
        return [r for (r,) in conn.execute(query)]


def expire_retries(engine: sa.Engine, before: datetime, now: datetime) -> int:
    """Give up on work older than the deadline: retry rows first tried before it, and pending rows of
    abandoned runs started before it. They become failed, which frees their papers for later digests."""
    old_runs = sa.select(run.c.id).where(run.c.status != "running", run.c.started_at < before)
    with engine.begin() as conn:
        retried = conn.execute(
            delivery.update()
            .where(delivery.c.state == DeliveryState.RETRY, delivery.c.first_attempt_at < before)
            .values(state=DeliveryState.FAILED, last_reply="gave up: retry deadline passed", updated_at=now)
        ).rowcount
        stale = conn.execute(
            delivery.update()
            .where(delivery.c.state == DeliveryState.PENDING, delivery.c.run_id.in_(old_runs))
            .values(
                state=DeliveryState.FAILED,
                last_reply="gave up: the run was abandoned too long ago",
                updated_at=now,
            )
        ).rowcount
    return int(retried) + int(stale)


#: A row in ``sending`` this long is no longer in anybody's hands. Rows of a dead process's own run are
#: recovered at once (recover_abandoned); this sweep only catches rows of older runs it was retrying, so it
#: can wait far longer than any batch takes, even at a slow rate limit.
SENDING_ABANDONED_AFTER = timedelta(hours=6)


def recover_abandoned(engine: sa.Engine, now: datetime, owner: str) -> int:
    """Runs held by dead processes become ``interrupted`` (their in-flight rows ``uncertain``); so do rows
    left in ``sending`` long ago by any process. Later runs then finish what those runs left pending."""
    with engine.begin() as conn:
        running = conn.execute(
            sa.select(run.c.id, run.c.owner, run.c.heartbeat_at).where(
                run.c.status == "running", run.c.owner != owner
            )
        ).all()
    count = 0
    for run_id, other, beat in running:
        beat = _aware(beat)
        if _owner_alive(other) and beat is not None and now - beat < STALE_AFTER:
            continue
        with engine.begin() as conn:
            taken = conn.execute(
                run.update()
                .where(run.c.id == run_id, run.c.status == "running", _same(run.c.owner, other))
                .values(status="interrupted", error=f"the process {other} stopped without finishing")
            ).rowcount
            if taken:
                count += 1
                conn.execute(
                    delivery.update()
                    .where(delivery.c.run_id == run_id, delivery.c.state == DeliveryState.SENDING)
                    .values(state=DeliveryState.UNCERTAIN, last_reply=_UNCERTAIN_REPLY, updated_at=now)
                )
    with engine.begin() as conn:
        conn.execute(
            delivery.update()
            .where(
                delivery.c.state == DeliveryState.SENDING,
                delivery.c.updated_at < now - SENDING_ABANDONED_AFTER,
            )
            .values(state=DeliveryState.UNCERTAIN, last_reply=_UNCERTAIN_REPLY, updated_at=now)
        )
    return count


_UNCERTAIN_REPLY = "process stopped while sending; not resent (RFC 1047)"


def settle(bind: Bind, row: Due, state: DeliveryState, reply: str, now: datetime) -> bool:
    """Move a due row straight to a final state that involves no mail (skipped, failed), conditionally."""
    with _tx(bind) as conn:
        return bool(
            conn.execute(
                delivery.update()
                .where(
                    delivery.c.id == row.id,
                    delivery.c.state == row.state,
                    delivery.c.attempts == row.attempts,
                )
                .values(state=state, last_reply=reply[:1000], updated_at=now)
            ).rowcount
        )


def state_counts(engine: sa.Engine, run_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(delivery.c.state, sa.func.count())
            .where(delivery.c.run_id == run_id)
            .group_by(delivery.c.state)
        ).all()
    return {state: int(n) for state, n in rows}


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


def retry_backoff(attempts: int, base: float) -> timedelta:
    """Exponential backoff for a temporary failure: base, 2*base, 4*base... capped at 6 hours."""
    return timedelta(seconds=min(base * (2 ** max(0, attempts - 1)), 6 * 3600))


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
