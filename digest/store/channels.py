"""The second ways to the planned papers: team-chat posts (``channel_post``), the web archive of a
subscriber's digests and the papers behind their Atom feed. All their SQL lives here.

A ``channel_post`` row follows the outbox discipline of ``delivery``: written before the post (the unique
(channel, date) key makes it once per day), claimed with a conditional update, settled once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryState, Paper
from digest.store.papers import paper_from_row
from digest.store.settings import sending_allowed
from digest.store.tables import channel_post, delivery, paper, run

#: States whose papers count as posted (or possibly posted) to a channel: never planned again.
_PROMISED = (
    DeliveryState.PENDING,
    DeliveryState.SENDING,
    DeliveryState.RETRY,
    DeliveryState.SENT,
    DeliveryState.UNCERTAIN,
)
#: Digests a subscriber can see again: sent, or possibly sent (RFC 1047).
_SHOWN = (DeliveryState.SENT, DeliveryState.UNCERTAIN)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were stored as UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Post:
    """One channel_post row."""

    id: int
    channel: str
    post_date: date
    state: str
    attempts: int
    parts_sent: int
    paper_ids: list[str]
    last_reply: str | None
    first_attempt_at: datetime | None
    next_attempt_at: datetime | None


def _post(row: Any) -> Post:
    m = row._mapping
    return Post(
        id=m["id"],
        channel=m["channel"],
        post_date=m["post_date"],
        state=m["state"],
        attempts=m["attempts"],
        parts_sent=m["parts_sent"],
        paper_ids=list(m["paper_ids"] or []),
        last_reply=m["last_reply"],
        first_attempt_at=_utc(m["first_attempt_at"]),
        next_attempt_at=_utc(m["next_attempt_at"]),
    )


def get_post(engine: sa.Engine, channel: str, day: date) -> Post | None:
    """The post of ``channel`` for ``day``, or None when none was planned yet."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(channel_post).where(channel_post.c.channel == channel, channel_post.c.post_date == day)
        ).first()
    return _post(row) if row else None


def plan_post(engine: sa.Engine, channel: str, day: date, paper_ids: Sequence[str], now: datetime) -> Post:
    """Write the day's post for ``channel`` unless one exists; the row that holds the key either way.

    A plan with no papers is written as ``skipped``: the day is settled, nothing is posted.
    """
    state = DeliveryState.PENDING if paper_ids else DeliveryState.SKIPPED
    try:
        with engine.begin() as conn:
            conn.execute(
                channel_post.insert().values(
                    channel=channel,
                    post_date=day,
                    state=state,
                    attempts=0,
                    parts_sent=0,
                    paper_ids=list(paper_ids),
                    created_at=now,
                    updated_at=now,
                )
            )
    except sa.exc.IntegrityError:
        pass  # another process (or an earlier run) planned it first: its plan stands
    found = get_post(engine, channel, day)
    assert found is not None
    return found


def posted_ids(engine: sa.Engine, channel: str, since: date, before: date) -> set[str]:
    """Paper ids posted (or promised) to ``channel`` on days in [since, before)."""
    query = sa.select(channel_post.c.paper_ids).where(
        channel_post.c.channel == channel,
        channel_post.c.post_date >= since,
        channel_post.c.post_date < before,
        channel_post.c.state.in_(_PROMISED),
    )
    with engine.connect() as conn:
        return {pid for (ids,) in conn.execute(query) for pid in ids or []}


def unfinished_days(engine: sa.Engine, channel: str, since: date, before: date) -> list[date]:
    """Days in [since, before) whose post to ``channel`` is still pending or waiting for a retry."""
    query = (
        sa.select(channel_post.c.post_date)
        .where(
            channel_post.c.channel == channel,
            channel_post.c.post_date >= since,
            channel_post.c.post_date < before,
            channel_post.c.state.in_([DeliveryState.PENDING, DeliveryState.RETRY]),
        )
        .order_by(channel_post.c.post_date)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def claim_post(engine: sa.Engine, post: Post, now: datetime) -> Post | None:
    """``pending|retry -> sending`` conditionally on the state and attempts read; None when another
    process got there first (or the row changed since it was read)."""
    with engine.begin() as conn:
        won = conn.execute(
            channel_post.update()
            .where(
                channel_post.c.id == post.id,
                channel_post.c.state == post.state,
                channel_post.c.attempts == post.attempts,
                channel_post.c.state.in_([DeliveryState.PENDING, DeliveryState.RETRY]),
                sending_allowed(),  # the console's kill switch holds channel posts too
            )
            .values(
                state=DeliveryState.SENDING,
                attempts=post.attempts + 1,
                first_attempt_at=post.first_attempt_at or now,
                updated_at=now,
            )
        ).rowcount
    if won != 1:
        return None
    return Post(
        post.id,
        post.channel,
        post.post_date,
        DeliveryState.SENDING,
        post.attempts + 1,
        post.parts_sent,
        post.paper_ids,
        post.last_reply,
        post.first_attempt_at or now,
        post.next_attempt_at,
    )


def record_part(engine: sa.Engine, post_id: int, parts_sent: int, now: datetime) -> None:
    """One more message of a split post was accepted: a retry resumes after it."""
    with engine.begin() as conn:
        conn.execute(
            channel_post.update()
            .where(channel_post.c.id == post_id, channel_post.c.state == DeliveryState.SENDING)
            .values(parts_sent=parts_sent, updated_at=now)
        )


def settle_post(
    engine: sa.Engine,
    post_id: int,
    state: DeliveryState,
    reply: str,
    now: datetime,
    next_attempt_at: datetime | None = None,
) -> bool:
    """Record the outcome of a claimed post (only while it is still ``sending``)."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                channel_post.update()
                .where(channel_post.c.id == post_id, channel_post.c.state == DeliveryState.SENDING)
                .values(state=state, last_reply=reply[:1000], next_attempt_at=next_attempt_at, updated_at=now)
            ).rowcount
        )


def recover_stale_posts(engine: sa.Engine, now: datetime, older_than: timedelta) -> int:
    """Posts left in ``sending`` by a process that died become ``uncertain``: never posted twice blindly."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                channel_post.update()
                .where(
                    channel_post.c.state == DeliveryState.SENDING,
                    channel_post.c.updated_at < now - older_than,
                )
                .values(
                    state=DeliveryState.UNCERTAIN,
                    last_reply="process stopped while posting; not posted again",
                    updated_at=now,
                )
            ).rowcount
        )


# ---------------------------------------------------------------------------------------------- archive


@dataclass(frozen=True, slots=True)
class SentDigest:
    """One digest of the archive: its local date, how many papers it carried, when it was recorded."""

    day: date
    papers: int
    sent_at: datetime | None


def sent_digests(
    engine: sa.Engine, subscriber_id: int, limit: int, offset: int
) -> tuple[list[SentDigest], int]:
    """The subscriber's sent digests, newest first (one page), and how many there are in all."""
    shown = sa.and_(delivery.c.subscriber_id == subscriber_id, delivery.c.state.in_(_SHOWN))
    query = (
        sa.select(run.c.run_date, delivery.c.paper_ids, delivery.c.updated_at)
        .join(run, run.c.id == delivery.c.run_id)
        .where(shown)
        .order_by(run.c.run_date.desc(), delivery.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as conn:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(delivery).where(shown)).scalar() or 0)
        rows = conn.execute(query).all()
    return [SentDigest(day, len(ids or []), _utc(at)) for day, ids, at in rows], total


def digest_paper_ids(engine: sa.Engine, subscriber_id: int, day: date) -> list[str] | None:
    """The paper ids of the subscriber's digest of ``day`` (as planned, in mail order); None when no
    digest of that day was sent to them."""
    query = (
        sa.select(delivery.c.paper_ids)
        .join(run, run.c.id == delivery.c.run_id)
        .where(delivery.c.subscriber_id == subscriber_id, run.c.run_date == day, delivery.c.state.in_(_SHOWN))
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else list(row[0] or [])


# ---------------------------------------------------------------------------------------------- feed


_FEED_COLUMNS = [c for c in paper.c if c.name != "last_seen_at"]


def papers_first_seen(
    engine: sa.Engine, start: date, end: date, *, min_upvotes: int = 0
) -> list[tuple[Paper, datetime]]:
    """The papers of days [start, end] with when each was first seen, newest first."""
    query = (
        sa.select(*_FEED_COLUMNS)
        .where(paper.c.daily_date.between(start, end), paper.c.upvotes >= min_upvotes)
        .order_by(paper.c.first_seen_at.desc(), paper.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [(paper_from_row(r), _utc(r.first_seen_at) or datetime.min.replace(tzinfo=UTC)) for r in rows]


def papers_stamp(engine: sa.Engine, start: date, end: date) -> tuple[int, datetime | None]:
    """How many papers days [start, end] hold and when any of them last changed: a feed built from them
    cannot have changed while both stay the same (readers poll; this answers a 304 without matching)."""
    query = sa.select(sa.func.count(), sa.func.max(paper.c.last_seen_at)).where(
        paper.c.daily_date.between(start, end)
    )
    with engine.connect() as conn:
        count, latest = conn.execute(query).one()
    return int(count or 0), _utc(latest)
