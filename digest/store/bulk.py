"""Recording a batch of delivery outcomes in one statement per table on PostgreSQL.

``record_outcomes`` wrote a batch as one UPDATE per row and one INSERT per delivered paper (16 digests of 30
papers: 496 statements). psycopg pipelines them into one round trip, but each still costs the server a
statement and us its Python-side bookkeeping. Here each table gets one statement that reads its rows from
arrays (``unnest``). SQLite keeps ``executemany`` for the updates (it is in-process, and its loop runs in
C), but takes each mail's papers as one JSON array (``json_each``): one parameter set per mail instead of one
per paper, whose bindings cost more than the inserts (a 30-paper digest: 30 rows).
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
from digest.store.tables import delivered_paper, delivery, subscriber

__all__ = ["OutcomeRows", "insert_delivered", "record_and_claim_pg", "record_rows", "update_outcomes"]


@dataclass(frozen=True)
class OutcomeRows:
    """A group of outcomes as rows: the outbox updates (row_id, new_state, reply, msg_id, next_at, now), the
    delivered papers (subscriber_id, paper_id, run_id, delivered_at), and the subscribers sent to."""

    rows: Sequence[dict[str, Any]]
    delivered: Sequence[dict[str, Any]]
    sent_to: Sequence[int]


_UPDATE_SQL = """
    UPDATE delivery AS d
    SET state = v.state, last_reply = v.reply, message_id = v.msg_id, next_attempt_at = v.next_at,
        updated_at = v.now
    FROM unnest(
        CAST(:ids AS integer[]), CAST(:states AS varchar[]), CAST(:replies AS text[]),
        CAST(:msg_ids AS varchar[]), CAST(:next_ats AS timestamptz[]), CAST(:nows AS timestamptz[])
    ) AS v(id, state, reply, msg_id, next_at, now)
    WHERE d.id = v.id AND d.state = :sending
"""
_INSERT_DELIVERED_SQL = """
    INSERT INTO delivered_paper (subscriber_id, paper_id, run_id, delivered_at)
    SELECT * FROM unnest(
        CAST(:subscriber_ids AS integer[]), CAST(:paper_ids AS varchar[]), CAST(:run_ids AS integer[]),
        CAST(:delivered_ats AS timestamptz[])
    )
    ON CONFLICT (subscriber_id, paper_id) DO NOTHING
"""
_UPDATE_PG = sa.text(_UPDATE_SQL)
_INSERT_DELIVERED_PG = sa.text(_INSERT_DELIVERED_SQL)
# The three writes of a group of outcomes in ONE statement (data-modifying CTEs run whether or not they are
# read, in one snapshot, atomically): each statement on PostgreSQL costs a round trip and SQLAlchemy's
# per-statement work, and a group is often one message (its outcome goes with the sender's next claim).
_RECORD_PG = sa.text(
    f"WITH outcomes AS ({_UPDATE_SQL} RETURNING d.id), papers AS ({_INSERT_DELIVERED_SQL} RETURNING 1)"
    " UPDATE subscriber SET last_digest_at = CAST(:now AS timestamptz), hard_bounces = 0"
    " WHERE id = ANY(CAST(:sent AS integer[]))"
)

# A sender's outcome and the next claims in ONE autocommitted statement: one round trip per hand-over instead
# of four (BEGIN, record, claim, COMMIT), and the senders wait on that round trip. The claim sees the rows as
# they were before the statement, so it never touches a row whose outcome is recorded here (those are
# `sending`, never a claimable state); the kill switch is the claim's own condition (settings.sending_allowed).
_ALLOWED_PG = str(sending_allowed().compile(compile_kwargs={"literal_binds": True}))
_RECORD_AND_CLAIM_PG = sa.text(
    f"WITH outcomes AS ({_UPDATE_SQL} RETURNING d.id), papers AS ({_INSERT_DELIVERED_SQL} RETURNING 1),"
    " sent AS (UPDATE subscriber SET last_digest_at = CAST(:now AS timestamptz), hard_bounces = 0"
    " WHERE id = ANY(CAST(:sent AS integer[])) RETURNING 1)"
    " UPDATE delivery AS c SET state = :sending, attempts = c.attempts + 1,"
    " first_attempt_at = COALESCE(c.first_attempt_at, CAST(:now AS timestamptz)),"
    " updated_at = CAST(:now AS timestamptz)"
    " FROM unnest(CAST(:claim_ids AS integer[]), CAST(:claim_states AS varchar[]),"
    " CAST(:claim_attempts AS integer[])) AS s(id, state, attempts)"
    f" WHERE c.id = s.id AND c.state = s.state AND c.attempts = s.attempts AND {_ALLOWED_PG}"
    " RETURNING c.id"
)

_SENT_TO = (
    subscriber.update()
    .where(subscriber.c.id.in_(sa.bindparam("sent", expanding=True)))
    .values(last_digest_at=sa.bindparam("now"), hard_bounces=0)
)

# "WHERE true": SQLite's parser needs it between a SELECT and an upsert's ON CONFLICT.
_INSERT_DELIVERED_SQLITE = sa.text(
    """
    INSERT INTO delivered_paper (subscriber_id, paper_id, run_id, delivered_at)
    SELECT :subscriber_id, value, :run_id, :delivered_at FROM json_each(:paper_ids) WHERE true
    ON CONFLICT (subscriber_id, paper_id) DO NOTHING
    """
).bindparams(sa.bindparam("delivered_at", type_=delivered_paper.c.delivered_at.type))

_UPDATE_ONE = (
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


def update_outcomes(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """``sending -> new_state`` for each row (keys: row_id, new_state, reply, msg_id, next_at, now)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(_UPDATE_ONE, list(rows))
        return
    conn.execute(_UPDATE_PG, _outcome_arrays(rows))


def insert_delivered(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """delivered_paper rows (subscriber_id, paper_id, run_id, delivered_at); ones already there are kept."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        papers: dict[tuple[int, int | None, datetime], list[str]] = {}
        for r in rows:
            papers.setdefault((r["subscriber_id"], r["run_id"], r["delivered_at"]), []).append(r["paper_id"])
        params = [
            {"subscriber_id": sub, "run_id": run, "delivered_at": at, "paper_ids": json.dumps(ids)}
            for (sub, run, at), ids in papers.items()
        ]
        conn.execute(_INSERT_DELIVERED_SQLITE, params)
        return
    conn.execute(_INSERT_DELIVERED_PG, _delivered_arrays(rows))


def record_rows(conn: sa.Connection, outcomes: OutcomeRows, now: datetime) -> None:
    """A group's outcomes (``update_outcomes``), the papers its sent mails showed (``insert_delivered``) and
    their subscribers' ``last_digest_at``: one statement on PostgreSQL, three on SQLite."""
    if conn.dialect.name != "postgresql":
        update_outcomes(conn, outcomes.rows)
        insert_delivered(conn, outcomes.delivered)
        if outcomes.sent_to:
            conn.execute(_SENT_TO, {"sent": list(outcomes.sent_to), "now": now})
        return
    conn.execute(_RECORD_PG, _record_params(outcomes, now))


def record_and_claim_pg(
    conn: sa.Connection,
    outcomes: OutcomeRows,
    seen: Sequence[tuple[int, str, int]],
    now: datetime,
) -> set[int]:
    """``record_rows`` and the claim of ``seen`` rows (id, state and attempts as read) in one statement on
    PostgreSQL; the ids of the rows won. On an AUTOCOMMIT connection it is one round trip and one transaction.
    """
    params = {
        **_record_params(outcomes, now),
        "claim_ids": [i for i, _, _ in seen],
        "claim_states": [s for _, s, _ in seen],
        "claim_attempts": [a for _, _, a in seen],
    }
    return {int(i) for (i,) in conn.execute(_RECORD_AND_CLAIM_PG, params)}


def _record_params(outcomes: OutcomeRows, now: datetime) -> dict[str, Any]:
    return {
        **_outcome_arrays(outcomes.rows),
        **_delivered_arrays(outcomes.delivered),
        "sent": list(outcomes.sent_to),
        "now": now,
    }


def _outcome_arrays(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ids": [r["row_id"] for r in rows],
        "states": [str(r["new_state"]) for r in rows],
        "replies": [r["reply"] for r in rows],
        "msg_ids": [r["msg_id"] for r in rows],
        "next_ats": [r["next_at"] for r in rows],
        "nows": [r["now"] for r in rows],
        "sending": str(DeliveryState.SENDING),
    }


def _delivered_arrays(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "subscriber_ids": [r["subscriber_id"] for r in rows],
        "paper_ids": [r["paper_id"] for r in rows],
        "run_ids": [r["run_id"] for r in rows],
        "delivered_ats": [r["delivered_at"] for r in rows],
    }
