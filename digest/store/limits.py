"""Counting limits shared by every process on one database: at most ``limit`` hits per key per window.

Each key has one row: the start of its current window and the hits in it. Every change is one conditional
UPDATE (or an INSERT that a concurrent one turns into a retry), so two processes can never both take the
last hit. Rows past their window are deleted as new keys arrive, so the table holds only live windows.
Windows are fixed, not sliding: a key can make ``limit`` hits at the end of one window and ``limit`` more
at the start of the next, which is fine for what these limits guard (mail bombing, form floods).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from digest.store.subscriber_rows import read_time, utc
from digest.store.tables import rate_limit

__all__ = ["Window", "full", "hit", "prune"]


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` hits per ``length``."""

    limit: int
    length: timedelta


def hit(engine: sa.Engine, key: str, window: Window, now: datetime) -> float | None:
    """Count one hit for ``key``: None when allowed, else the seconds until the window ends."""
    when = utc(now)
    fresh = rate_limit.c.window_start > when - window.length
    for _attempt in range(3):
        with engine.begin() as conn:
            counted = conn.execute(
                sa.update(rate_limit)
                .where(rate_limit.c.key == key, fresh, rate_limit.c.hits < window.limit)
                .values(hits=rate_limit.c.hits + 1)
            )
            if counted.rowcount == 1:
                return None
            restarted = conn.execute(
                sa.update(rate_limit)
                .where(rate_limit.c.key == key, sa.not_(fresh))
                .values(window_start=when, hits=1, expires_at=when + window.length)
            )
            if restarted.rowcount == 1:
                return None
            start = conn.execute(sa.select(rate_limit.c.window_start).where(rate_limit.c.key == key)).scalar()
        if start is not None:  # the window is full
            return max(1.0, ((read_time(start) or when) + window.length - when).total_seconds())
        try:
            with engine.begin() as conn:
                conn.execute(sa.delete(rate_limit).where(rate_limit.c.expires_at <= when))
                conn.execute(
                    sa.insert(rate_limit).values(
                        key=key, window_start=when, hits=1, expires_at=when + window.length
                    )
                )
            return None
        except sa.exc.IntegrityError:
            continue  # another process made the row first: count against it
    return 1.0


def full(engine: sa.Engine, key: str, window: Window, now: datetime) -> bool:
    """True when ``key`` has used up its hits in the current window (nothing is counted)."""
    when = utc(now)
    with engine.connect() as conn:
        hits = conn.execute(
            sa.select(rate_limit.c.hits).where(
                rate_limit.c.key == key, rate_limit.c.window_start > when - window.length
            )
        ).scalar()
    return hits is not None and hits >= window.limit


def prune(engine: sa.Engine, now: datetime) -> int:
    """Delete the windows that have ended; how many."""
    with engine.begin() as conn:
        return conn.execute(sa.delete(rate_limit).where(rate_limit.c.expires_at <= utc(now))).rowcount
