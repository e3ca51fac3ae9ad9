"""Paper embeddings in the ``paper`` table (semantic extra): which papers still need one, write, read.

An embedding is written once (``WHERE embedding IS NULL``) and never recomputed: a later fetch that
changes a paper's upvotes leaves it alone, and two processes embedding the same paper cannot fight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from digest.models import Paper
from digest.store.papers import paper_from_row
from digest.store.tables import paper, rule

ID_CHUNK = 500
_COLUMNS = [c for c in paper.c if c.name not in ("first_seen_at", "last_seen_at", "embedding")]
_SAVE = (
    paper.update()
    .where(paper.c.id == sa.bindparam("pid"), paper.c.embedding.is_(None))
    .values(embedding=sa.bindparam("blob"))
)


def papers_without_embedding(engine: sa.Engine, limit: int = 1000) -> list[Paper]:
    """Up to ``limit`` stored papers that have no embedding yet, newest day first."""
    query = (
        sa.select(*_COLUMNS)
        .where(paper.c.embedding.is_(None))
        .order_by(paper.c.daily_date.desc(), paper.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [paper_from_row(r) for r in conn.execute(query)]


def save_embeddings(engine: sa.Engine, blobs: Mapping[str, bytes]) -> int:
    """Store embeddings of papers that have none yet; return how many rows took one."""
    if not blobs:
        return 0
    with engine.begin() as conn:
        result = conn.execute(_SAVE, [{"pid": pid, "blob": blob} for pid, blob in blobs.items()])
    return int(result.rowcount or 0)


def load_embeddings(engine: sa.Engine, ids: Sequence[str]) -> dict[str, bytes]:
    """The stored embeddings of these papers (papers without one, or unknown, are left out)."""
    out: dict[str, bytes] = {}
    wanted = list(dict.fromkeys(ids))
    with engine.connect() as conn:
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            rows = conn.execute(
                sa.select(paper.c.id, paper.c.embedding).where(
                    paper.c.id.in_(chunk), paper.c.embedding.is_not(None)
                )
            )
            out.update({pid: bytes(blob) for pid, blob in rows})
    return out


def paper_titles(engine: sa.Engine, ids: Sequence[str]) -> dict[str, str]:
    """The titles of the stored papers among ``ids``."""
    out: dict[str, str] = {}
    wanted = list(dict.fromkeys(ids))
    with engine.connect() as conn:
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            rows = conn.execute(sa.select(paper.c.id, paper.c.title).where(paper.c.id.in_(chunk)))
            out.update({pid: title for pid, title in rows})
    return out


def like_rule_queries(engine: sa.Engine) -> list[str]:
    """Every stored rule that may hold a ``like:`` (the caller parses them)."""
    with engine.connect() as conn:
        return list(conn.scalars(sa.select(rule.c.query).where(rule.c.query.contains("like:")).distinct()))
