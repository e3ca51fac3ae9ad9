"""Papers in the database: bulk upsert by arXiv id, window queries, and the delivered-papers diff.

Hot paths use SQLAlchemy Core with one statement per chunk (``INSERT ... ON CONFLICT DO UPDATE`` on both
SQLite and PostgreSQL), never per-row ORM work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from digest.models import Paper
from digest.store.tables import delivered_paper, paper, subscriber

CHUNK = 500  # rows per statement: 18 columns x 500 stays far below SQLite's and PostgreSQL's parameter limits
ID_CHUNK = 1000

# Fields a later fetch may not carry (an HTML fallback page, an older schema): keep what we knew.
_KEEP_WHEN_MISSING = (
    "published_at",
    "ai_summary",
    "github_repo",
    "github_stars",
    "project_page",
    "thumbnail_url",
    "organization",
    "organization_handle",
)
# Fields every fetch carries: the newest value wins (upvotes and comments change all day).
_ALWAYS_REFRESH = ("title", "summary", "authors", "upvotes", "num_comments", "last_seen_at")

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _row(p: Paper, now: datetime) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "summary": p.summary,
        "authors": list(p.authors),
        "upvotes": p.upvotes,
        "num_comments": p.num_comments,
        "published_at": p.published_at.astimezone(UTC) if p.published_at else None,
        "daily_date": p.daily_date,
        "ai_summary": p.ai_summary,
        "ai_keywords": list(p.ai_keywords),
        "github_repo": p.github_repo,
        "github_stars": p.github_stars,
        "project_page": p.project_page,
        "thumbnail_url": p.thumbnail_url,
        "organization": p.organization,
        "organization_handle": p.organization_handle,
        "first_seen_at": now,
        "last_seen_at": now,
    }


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(paper)
    if dialect == "sqlite":
        return sqlite.insert(paper)
    raise NotImplementedError(f"upsert is implemented for sqlite and postgresql, not {dialect}")


def upsert_papers(engine: sa.Engine, papers: Iterable[Paper], now: datetime) -> int:
    """Insert new papers and refresh known ones; return the number of distinct papers written.

    A known paper keeps ``first_seen_at``; ``last_seen_at`` becomes ``now``; upvotes, comments, title,
    abstract and authors take the new values; optional fields (AI summary, links, organisation) take the new
    value when there is one; AI keywords are replaced unless the new fetch has none. ``daily_date`` only
    moves forward (a paper listed on two days belongs to the later one, as in ``fetch_days``).
    """
    unique: dict[str, Paper] = {}
    for p in papers:
        old = unique.get(p.id)
        # Within one statement PostgreSQL refuses to touch a row twice: one row per id.
        if old is None or p.daily_date >= old.daily_date:
            unique[p.id] = p
    if not unique:
        return 0
    now = now.astimezone(UTC)  # SQLite keeps the wall-clock value only: store UTC everywhere
    rows = [_row(p, now) for p in unique.values()]
    stmt = _insert(engine.dialect.name)
    ex = stmt.excluded
    cur = paper.c
    updates: dict[str, Any] = {name: ex[name] for name in _ALWAYS_REFRESH}
    updates.update({name: sa.func.coalesce(ex[name], cur[name]) for name in _KEEP_WHEN_MISSING})
    # JSON has no equality operator in PostgreSQL: compare the serialised text.
    updates["ai_keywords"] = sa.case(
        (sa.cast(ex.ai_keywords, sa.Text) == "[]", cur.ai_keywords), else_=ex.ai_keywords
    )
    updates["daily_date"] = sa.case((ex.daily_date > cur.daily_date, ex.daily_date), else_=cur.daily_date)
    upsert = stmt.on_conflict_do_update(index_elements=[cur.id], set_=updates)
    with engine.begin() as conn:
        for chunk in _chunks(rows, CHUNK):
            conn.execute(upsert, list(chunk))
    return len(rows)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were stored as UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def paper_from_row(row: Any) -> Paper:
    """A domain Paper from a ``paper`` table row."""
    m = row._mapping
    return Paper(
        id=m["id"],
        title=m["title"],
        summary=m["summary"],
        daily_date=m["daily_date"],
        authors=tuple(m["authors"] or ()),
        upvotes=m["upvotes"],
        num_comments=m["num_comments"],
        published_at=_utc(m["published_at"]),
        ai_summary=m["ai_summary"],
        ai_keywords=tuple(m["ai_keywords"] or ()),
        github_repo=m["github_repo"],
        github_stars=m["github_stars"],
        project_page=m["project_page"],
        thumbnail_url=m["thumbnail_url"],
        organization=m["organization"],
        organization_handle=m["organization_handle"],
    )


_COLUMNS = [c for c in paper.c if c.name not in ("first_seen_at", "last_seen_at", "embedding")]
_ORDER = (paper.c.daily_date.desc(), paper.c.upvotes.desc(), paper.c.id)


def load_papers(engine: sa.Engine, start: date, end: date, *, min_upvotes: int = 0) -> list[Paper]:
    """Papers whose daily_date is in [start, end] with at least ``min_upvotes``; newest day, then most upvoted first."""
    query = (
        sa.select(*_COLUMNS)
        .where(paper.c.daily_date.between(start, end), paper.c.upvotes >= min_upvotes)
        .order_by(*_ORDER)
    )
    with engine.connect() as conn:
        return [paper_from_row(r) for r in conn.execute(query)]


def delivered_counts(engine: sa.Engine) -> dict[str, int]:
    """How many papers each subscriber address has been sent (addresses with none are left out)."""
    query = (
        sa.select(subscriber.c.email, sa.func.count())
        .join(delivered_paper, delivered_paper.c.subscriber_id == subscriber.c.id)
        .group_by(subscriber.c.email)
    )
    with engine.connect() as conn:
        return {address: int(n) for address, n in conn.execute(query)}


def delivered_ids(
    engine: sa.Engine, subscriber_ids: Sequence[int], paper_ids: Sequence[str]
) -> dict[int, set[str]]:
    """For each subscriber, which of ``paper_ids`` were already delivered to them (every id asked is a key).

    The bulk form of the diff: load the window's papers once, then drop ``result[s]`` per subscriber.
    """
    result: dict[int, set[str]] = {s: set() for s in subscriber_ids}
    if not result or not paper_ids:
        return result
    subs = list(result)
    pids = list(dict.fromkeys(paper_ids))
    with engine.connect() as conn:
        for sub_chunk in _chunks(subs, ID_CHUNK):
            for pid_chunk in _chunks(pids, ID_CHUNK):
                rows = conn.execute(_DELIVERED, {"subs": list(sub_chunk), "pids": list(pid_chunk)})
                for sub_id, paper_id in rows:
                    result[sub_id].add(paper_id)
    return result


# Built once with expanding parameters: called for every delivery batch, and building a fresh IN (...)
# statement costs more than running it.
_DELIVERED = sa.select(delivered_paper.c.subscriber_id, delivered_paper.c.paper_id).where(
    delivered_paper.c.subscriber_id.in_(sa.bindparam("subs", expanding=True)),
    delivered_paper.c.paper_id.in_(sa.bindparam("pids", expanding=True)),
)
