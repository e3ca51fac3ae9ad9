"""A group's delivery outcomes and claims, in as few statements as each database allows.

Senders hand over an outcome and ask for their next claim together (``digest.store.claims``): a group is a few
rows, and it is written for every message sent, so what counts is the number of statements and SQLAlchemy's
work per statement, not the rows. One UPDATE per row and one INSERT per delivered paper (16 digests of 30
papers: 496 statements) became:

- PostgreSQL: the rows travel as arrays (``unnest``), and the outcome update, the delivered papers,
  ``last_digest_at`` and the next claims are ONE statement (data-modifying CTEs run in one snapshot,
  atomically): on an AUTOCOMMIT connection a hand-over is one round trip instead of four (BEGIN, record,
  claim, COMMIT), and the senders wait on it.
- SQLite: in-process, so ``executemany`` serves the updates; each mail's papers travel as one JSON array
  (``json_each``): one parameter set per mail instead of one per paper, whose bindings cost more than the
  inserts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryState
from digest.store.settings import sending_allowed
from digest.store.tables import TZ, delivery, subscriber

__all__ = ["OutcomeRows", "claim_ids", "record_and_claim", "record_rows"]


@dataclass(frozen=True)
class OutcomeRows:
    """A group of outcomes as rows: the outbox updates (row_id, new_state, reply, msg_id, next_at, now), the
    delivered papers (subscriber_id, paper_id, run_id, delivered_at), and the subscribers sent to."""

    rows: Sequence[dict[str, Any]]
    delivered: Sequence[dict[str, Any]]
    sent_to: Sequence[int]


#: (id, state, attempts) of a row as it was read: a claim wins only a row still exactly so.
Seen = tuple[int, str, int]

# The kill switch is every claim's own condition (settings.sending_allowed), compiled once into the SQL.
_ALLOWED = str(sending_allowed().compile(compile_kwargs={"literal_binds": True}))

# ------------------------------------------------------------------------------------------------ PostgreSQL

_UPDATE_PG = """
    UPDATE delivery AS d
    SET state = v.state, last_reply = v.reply, message_id = v.msg_id, next_attempt_at = v.next_at,
        updated_at = v.now
    FROM unnest(
        CAST(:ids AS integer[]), CAST(:states AS varchar[]), CAST(:replies AS text[]),
        CAST(:msg_ids AS varchar[]), CAST(:next_ats AS timestamptz[]), CAST(:nows AS timestamptz[])
    ) AS v(id, state, reply, msg_id, next_at, now)
    WHERE d.id = v.id AND d.state = :sending
"""
_INSERT_DELIVERED_PG = """
    INSERT INTO delivered_paper (subscriber_id, paper_id, run_id, delivered_at)
    SELECT * FROM unnest(
        CAST(:subscriber_ids AS integer[]), CAST(:paper_ids AS varchar[]), CAST(:run_ids AS integer[]),
        CAST(:delivered_ats AS timestamptz[])
    )
    ON CONFLICT (subscriber_id, paper_id) DO NOTHING
"""
_SENT_TO_PG = """
    UPDATE subscriber SET last_digest_at = CAST(:now AS timestamptz), hard_bounces = 0
    WHERE id = ANY(CAST(:sent AS integer[]))
"""
_CLAIM_PG = f"""
    UPDATE delivery AS c
    SET state = :sending, attempts = c.attempts + 1,
        first_attempt_at = COALESCE(c.first_attempt_at, CAST(:now AS timestamptz)),
        updated_at = CAST(:now AS timestamptz)
    FROM unnest(
        CAST(:claim_ids AS integer[]), CAST(:claim_states AS varchar[]), CAST(:claim_attempts AS integer[])
    ) AS s(id, state, attempts)
    WHERE c.id = s.id AND c.state = s.state AND c.attempts = s.attempts AND {_ALLOWED}
    RETURNING c.id
"""
_RECORD_CTES_PG = (
    f"WITH outcomes AS ({_UPDATE_PG} RETURNING d.id), papers AS ({_INSERT_DELIVERED_PG} RETURNING 1)"
)
_RECORD_PG_STATEMENT = sa.text(f"{_RECORD_CTES_PG} {_SENT_TO_PG}")
_CLAIM_PG_STATEMENT = sa.text(_CLAIM_PG)
# The claim sees the rows as they were before the statement, so it never touches a row whose outcome is
# recorded here (those are `sending`, never a claimable state).
_RECORD_AND_CLAIM_PG_STATEMENT = sa.text(
    f"{_RECORD_CTES_PG}, sent AS ({_SENT_TO_PG} RETURNING 1) {_CLAIM_PG}"
)

# ---------------------------------------------------------------------------------------------------- SQLite


# Core statements with executemany and expanding lists: SQLite is in-process, and rewriting these as JSON
# parameters (json_each) measured no faster: its own page writes at each commit dominate.
_UPDATE_SQLITE = (
    delivery.update()
    .where(delivery.c.id == sa.bindparam("row_id"), delivery.c.state == DeliveryState.SENDING)
    .values(
        state=sa.bindparam("new_state"),
        last_reply=sa.bindparam("reply"),
        message_id=sa.bindparam("msg_id"),
        next_attempt_at=sa.bindparam("next_at"),
        updated_at=sa.bindparam("now"),
    )
)
# One parameter set per mail, its papers as one JSON array. "WHERE true": SQLite's parser needs it between a
# SELECT and an upsert's ON CONFLICT.
_INSERT_DELIVERED_SQLITE = sa.text(
    """
    INSERT INTO delivered_paper (subscriber_id, paper_id, run_id, delivered_at)
    SELECT :subscriber_id, value, :run_id, :delivered_at FROM json_each(:paper_ids) WHERE true
    ON CONFLICT (subscriber_id, paper_id) DO NOTHING
    """
).bindparams(sa.bindparam("delivered_at", type_=TZ))
_SENT_TO_SQLITE = (
    subscriber.update()
    .where(subscriber.c.id.in_(sa.bindparam("sent", expanding=True)))
    .values(last_digest_at=sa.bindparam("now"), hard_bounces=0)
)
_CLAIM_SQLITE = (
    delivery.update()
    .where(
        delivery.c.id.in_(sa.bindparam("ids", expanding=True)),
        sa.tuple_(delivery.c.id, delivery.c.state, delivery.c.attempts).in_(
            sa.bindparam("seen", expanding=True)
        ),
        sending_allowed(),
    )
    .values(
        state=DeliveryState.SENDING,
        attempts=delivery.c.attempts + 1,
        first_attempt_at=sa.func.coalesce(delivery.c.first_attempt_at, sa.bindparam("now")),
        updated_at=sa.bindparam("now"),
    )
    .returning(delivery.c.id)
)

# --------------------------------------------------------------------------------------------------- writing


def record_rows(conn: sa.Connection, outcomes: OutcomeRows, now: datetime) -> None:
    """A group's outcomes (``sending -> new state``, only for rows still ``sending``), the papers its sent mails
    showed (ones already recorded are kept), and their subscribers' ``last_digest_at``, inside the caller's
    transaction: one statement on PostgreSQL, three on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(_RECORD_PG_STATEMENT, _record_params_pg(outcomes, now))
        return
    if outcomes.rows:
        conn.execute(_UPDATE_SQLITE, list(outcomes.rows))
    if outcomes.delivered:
        papers: dict[tuple[int, int | None, datetime], list[str]] = {}
        for r in outcomes.delivered:
            papers.setdefault((r["subscriber_id"], r["run_id"], r["delivered_at"]), []).append(r["paper_id"])
        params = [
            {"subscriber_id": sub, "run_id": run, "delivered_at": at, "paper_ids": json.dumps(ids)}
            for (sub, run, at), ids in papers.items()
        ]
        conn.execute(_INSERT_DELIVERED_SQLITE, params)
    if outcomes.sent_to:
        conn.execute(_SENT_TO_SQLITE, {"sent": list(outcomes.sent_to), "now": now})


def claim_ids(conn: sa.Connection, seen: Sequence[Seen], now: datetime) -> set[int]:
    """``pending|retry -> sending`` for the rows still as ``seen``, in one statement (in the caller's
    transaction, or its own on an AUTOCOMMIT connection), unless sending is paused; the ids of the rows won."""
    if not seen:
        return set()
    if conn.dialect.name == "postgresql":
        result = conn.execute(_CLAIM_PG_STATEMENT, {**_claim_params_pg(seen), "now": now})
    else:
        result = conn.execute(_CLAIM_SQLITE, {"ids": [i for i, _, _ in seen], "seen": list(seen), "now": now})
    return {int(i) for (i,) in result}


def record_and_claim(
    conn: sa.Connection, outcomes: OutcomeRows, seen: Sequence[Seen], now: datetime
) -> set[int]:
    """``record_rows`` and ``claim_ids`` together; on PostgreSQL one statement, so on an AUTOCOMMIT
    connection one round trip and one transaction (elsewhere: call it inside a transaction)."""
    if conn.dialect.name != "postgresql":
        record_rows(conn, outcomes, now)
        return claim_ids(conn, seen, now)
    params = {**_record_params_pg(outcomes, now), **_claim_params_pg(seen)}
    return {int(i) for (i,) in conn.execute(_RECORD_AND_CLAIM_PG_STATEMENT, params)}


def _record_params_pg(outcomes: OutcomeRows, now: datetime) -> dict[str, Any]:
    rows, delivered = outcomes.rows, outcomes.delivered
    return {
        "ids": [r["row_id"] for r in rows],
        "states": [str(r["new_state"]) for r in rows],
        "replies": [r["reply"] for r in rows],
        "msg_ids": [r["msg_id"] for r in rows],
        "next_ats": [r["next_at"] for r in rows],
        "nows": [r["now"] for r in rows],
        "sending": str(DeliveryState.SENDING),
        "subscriber_ids": [r["subscriber_id"] for r in delivered],
        "paper_ids": [r["paper_id"] for r in delivered],
        "run_ids": [r["run_id"] for r in delivered],
        "delivered_ats": [r["delivered_at"] for r in delivered],
        "sent": list(outcomes.sent_to),
        "now": now,
    }


def _claim_params_pg(seen: Sequence[Seen]) -> dict[str, Any]:
    return {
        "claim_ids": [i for i, _, _ in seen],
        "claim_states": [s for _, s, _ in seen],
        "claim_attempts": [a for _, _, a in seen],
        "sending": str(DeliveryState.SENDING),
    }
