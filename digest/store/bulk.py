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
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryState
from digest.store.tables import delivered_paper, delivery, subscriber

__all__ = ["insert_delivered", "record_rows", "update_outcomes"]

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


def record_rows(
    conn: sa.Connection,
    rows: Sequence[dict[str, Any]],
    delivered: Sequence[dict[str, Any]],
    sent_to: Sequence[int],
    now: datetime,
) -> None:
    """A group's outcomes (``update_outcomes``), the papers its sent mails showed (``insert_delivered``) and
    their subscribers' ``last_digest_at``: one statement on PostgreSQL, three on SQLite."""
    if conn.dialect.name != "postgresql":
        update_outcomes(conn, rows)
        insert_delivered(conn, delivered)
        if sent_to:
            conn.execute(_SENT_TO, {"sent": list(sent_to), "now": now})
        return
    params = {**_outcome_arrays(rows), **_delivered_arrays(delivered), "sent": list(sent_to), "now": now}
    conn.execute(_RECORD_PG, params)


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
