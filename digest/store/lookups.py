"""Bulk lookups for one batch of deliveries: the papers and subscribers it needs, in one query each."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from digest.models import Paper, Subscriber
from digest.store.papers import paper_from_row
from digest.store.subscriber_rows import rules_by_subscriber, to_subscriber
from digest.store.tables import paper, subscriber

_PAPER_COLUMNS = [c for c in paper.c if c.name not in ("first_seen_at", "last_seen_at", "embedding")]
# Only what a Subscriber carries: the consent record (JSON) and timestamps cost a parse per row for nothing.
_SUBSCRIBER_COLUMNS = [
    subscriber.c[name]
    for name in (
        "id",
        "email",
        "name",
        "status",
        "cadence",
        "weekday",
        "managed_by_config",
        "token_version",
        "send_time",
        "timezone",
    )
]
_SUBSCRIBERS = sa.select(*_SUBSCRIBER_COLUMNS).where(subscriber.c.id.in_(sa.bindparam("ids", expanding=True)))


def papers_by_ids(engine: sa.Engine, ids: Sequence[str]) -> list[Paper]:
    """The stored papers with these ids (unknown ids are left out)."""
    out: list[Paper] = []
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            out.extend(
                paper_from_row(r)
                for r in conn.execute(sa.select(*_PAPER_COLUMNS).where(paper.c.id.in_(chunk)))
            )
    return out


def subscribers_by_ids(engine: sa.Engine, ids: Sequence[int]) -> dict[int, Subscriber]:
    """Subscribers (any status) with their rules, by id."""
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(_SUBSCRIBERS, {"ids": list(ids)}).all()
        rules = rules_by_subscriber(conn, [r.id for r in rows])
    return {r.id: to_subscriber(r, rules.get(r.id, [])) for r in rows}
