"""The delivery outbox: the state that makes sending crash-safe and never twice.

- A ``delivery`` row per (run, subscriber) is written before any send (planning, one transaction).
- Rows are claimed with a conditional update (``pending|retry -> sending``); only one process wins a row.
- ``sent`` and the ``delivered_paper`` rows are written in the same transaction.

The run rows themselves live in ``digest.store.runs``, the alerts in ``digest.store.alerts``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from digest.clock import maybe_utc
from digest.models import DeliveryState, RunStatus, SubscriberStatus
from digest.store.bulk import OutcomeRows, Seen, claim_ids, record_rows
from digest.store.db import Bind, transaction
from digest.store.settings import sending_allowed
from digest.store.tables import delivery, run, subscriber


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

    @property
    def seen(self) -> Seen:
        """What a claim of this row is conditional on: its id, state and attempts as read."""
        return (self.id, str(self.state), self.attempts)


#: Above any row id: the open end of an id range.
MAX_ID = 2**31 - 1  # the id columns are INTEGER


def due_deliveries(
    bind: Bind, run_ids: Sequence[int], now: datetime, limit: int, after_id: int = 0, upto_id: int = MAX_ID
) -> list[Due]:
    """Up to ``limit`` due rows with ids above ``after_id``, in id order. Reading claims nothing: see ``claim_one``.

    The delivery loop pages with ``after_id`` so each query starts where the last batch ended instead of
    stepping over every row already sent (which made a large run quadratic).
    """
    params = {"after": after_id, "upto": upto_id, "runs": list(run_ids), "now": now, "limit": limit}
    with transaction(bind) as conn:
        return [
            Due(
                r.id,
                r.run_id,
                r.subscriber_id,
                list(r.paper_ids or []),
                r.state,
                r.attempts,
                maybe_utc(r.first_attempt_at),
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
        delivery.c.id <= sa.bindparam("upto"),
        delivery.c.run_id.in_(sa.bindparam("runs", expanding=True)),
        sa.or_(
            delivery.c.state == DeliveryState.PENDING,
            sa.and_(
                delivery.c.state == DeliveryState.RETRY, delivery.c.next_attempt_at <= sa.bindparam("now")
            ),
        ),
        sending_allowed(),  # the kill switch: nothing is due while sending is paused
    )
    .order_by(delivery.c.id)
    .limit(sa.bindparam("limit"))
)


# The one claim statement (``claim_one`` and the grouped claims of digest/store/claims.py): conditional on the
# state and attempt count each row was read with, so a row another process claimed and put back in `retry`
# since we read it is not sent again now (its backoff) nor with a stale count.
def claim_rows(conn: sa.Connection, rows: Sequence[Due], now: datetime) -> dict[int, Claimed]:
    """``pending|retry -> sending`` for ``rows`` in one statement on ``conn`` (in the caller's transaction,
    or its own on an AUTOCOMMIT connection); the rows won, by id (the ones another process got are absent)."""
    if not rows:
        return {}
    return claimed_rows(rows, claim_ids(conn, [r.seen for r in rows], now), now)


def claimed_rows(rows: Sequence[Due], won: Collection[int], now: datetime) -> dict[int, Claimed]:
    """The rows of ``rows`` whose claim was won (their ids in ``won``), as claimed, by id."""
    # Each row won was exactly as read (state and attempts matched): its new values follow from the read ones.
    return {
        r.id: Claimed(r.id, r.run_id, r.subscriber_id, r.paper_ids, r.attempts + 1, r.first_attempt_at or now)
        for r in rows
        if r.id in won
    }


def claim_one(bind: Bind, row: Due, now: datetime) -> Claimed | None:
    """``pending|retry -> sending`` for one row, conditionally: None when another process got there first.

    One UPDATE, so on an AUTOCOMMIT connection (``autocommit_connection``) it is its own transaction: one
    round trip to PostgreSQL instead of three (BEGIN, UPDATE, COMMIT), one statement for SQLite.
    """
    if (
        isinstance(bind, sa.Connection)
        and bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    ):
        return claim_rows(bind, [row], now).get(row.id)
    with transaction(bind) as conn:
        return claim_rows(conn, [row], now).get(row.id)


def next_retry_at(
    bind: Bind,
    run_ids: Sequence[int],
    exclude: Collection[int] = (),
    id_range: tuple[int, int] = (0, MAX_ID),
) -> datetime | None:
    """When the earliest retry row of these runs (ids in ``id_range``) comes due; rows in ``exclude`` (those
    that used up their attempts of this run) do not count."""
    query = (
        sa.select(delivery.c.id, delivery.c.next_attempt_at)
        .where(
            delivery.c.run_id.in_(list(run_ids)),
            delivery.c.id.between(*id_range),
            delivery.c.state == DeliveryState.RETRY,
            delivery.c.next_attempt_at.is_not(None),
            sending_allowed(),
        )
        .order_by(delivery.c.next_attempt_at)
    )
    if not exclude:
        query = query.limit(1)
    with transaction(bind) as conn:
        for row_id, at in conn.execute(query):
            if row_id not in exclude:
                return maybe_utc(at)
    return None


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
    if not outcomes:
        return Recorded()
    with transaction(bind) as conn:
        return write_outcomes(conn, outcomes, now, hard_bounce_limit=hard_bounce_limit)


def write_outcomes(
    conn: sa.Connection, outcomes: Sequence[Outcome], now: datetime, *, hard_bounce_limit: int
) -> Recorded:
    """``record_outcomes`` inside the caller's transaction (the claims batcher adds its claims to it)."""
    result = Recorded()
    if not outcomes:
        return result
    record_rows(conn, outcome_rows(outcomes, now), now)  # one statement on PostgreSQL (store/bulk.py)
    for o in outcomes:
        if o.permanent_failure and _count_hard_bounce(conn, o.claimed.subscriber_id, now, hard_bounce_limit):
            result.bounced.append(o.claimed.subscriber_id)
    return result


def outcome_rows(outcomes: Sequence[Outcome], now: datetime) -> OutcomeRows:
    """The rows that record ``outcomes`` (digest.store.bulk)."""
    sent = [o for o in outcomes if o.state == DeliveryState.SENT]
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
    delivered = [
        {
            "subscriber_id": o.claimed.subscriber_id,
            "paper_id": pid,
            "run_id": o.claimed.run_id,
            "delivered_at": now,
        }
        for o in sent
        for pid in o.delivered
    ]
    return OutcomeRows(rows, delivered, sorted({o.claimed.subscriber_id for o in sent}))


def _count_hard_bounce(conn: sa.Connection, subscriber_id: int, now: datetime, limit: int) -> bool:
    """One more hard bounce for the subscriber; True when it reached ``limit`` and marked them bounced."""
    bounced = conn.execute(
        subscriber.update()
        .where(subscriber.c.id == subscriber_id)
        .values(hard_bounces=subscriber.c.hard_bounces + 1, updated_at=now)
        .returning(subscriber.c.hard_bounces)
    ).scalar()
    if bounced is None or bounced < limit:
        return False
    conn.execute(
        subscriber.update()
        .where(subscriber.c.id == subscriber_id, subscriber.c.status == SubscriberStatus.ACTIVE)
        .values(status=SubscriberStatus.BOUNCED, updated_at=now)
    )
    return True


def release(bind: Bind, claimed: Sequence[Claimed], now: datetime, reason: str) -> None:
    """Give back rows that were claimed but never handed to the server (nothing was sent)."""
    if not claimed:
        return
    with transaction(bind) as conn:
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
        run.c.status != RunStatus.RUNNING,
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
    old_runs = sa.select(run.c.id).where(run.c.status != RunStatus.RUNNING, run.c.started_at < before)
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


def settle(bind: Bind, row: Due, state: DeliveryState, reply: str, now: datetime) -> bool:
    """Move a due row straight to a final state that involves no mail (skipped, failed), conditionally."""
    with transaction(bind) as conn:
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


def retry_backoff(attempts: int, base: float) -> timedelta:
    """Exponential backoff for a temporary failure: base, 2*base, 4*base... capped at 6 hours."""
    return timedelta(seconds=min(base * (2 ** max(0, attempts - 1)), 6 * 3600))


def count_due(engine: sa.Engine, run_ids: Sequence[int]) -> int:
    """How many rows of these runs wait to be sent (pending or retry): the total of the progress display."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    delivery.c.run_id.in_(list(run_ids)),
                    delivery.c.state.in_([DeliveryState.PENDING, DeliveryState.RETRY]),
                )
            ).scalar()
            or 0
        )


def state_counts(engine: sa.Engine, run_id: int) -> dict[DeliveryState, int]:
    """The run's outbox rows by state."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(delivery.c.state, sa.func.count())
            .where(delivery.c.run_id == run_id)
            .group_by(delivery.c.state)
        ).all()
    return {DeliveryState(state): int(n) for state, n in rows}
