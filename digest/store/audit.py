"""The console's audit trail and its failed-login counts (in the database: every process shares them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from digest.store.tables import admin_audit, admin_login_failure

#: Failed-login rows older than this are pruned as new ones arrive (far past any lockout window).
KEEP_FAILURES = timedelta(days=2)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str | None = None
    detail: str | None = None
    ip: str | None = None


def record(engine: sa.Engine, entry: AuditEntry) -> None:
    """Write one admin action."""
    with engine.begin() as conn:
        conn.execute(
            admin_audit.insert().values(
                at=entry.at,
                actor=entry.actor[:64],
                action=entry.action[:64],
                target=entry.target[:320] if entry.target else None,
                detail=entry.detail[:2000] if entry.detail else None,
                ip=entry.ip[:64] if entry.ip else None,
            )
        )


def recent(engine: sa.Engine, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
    """The newest admin actions first."""
    query = (
        sa.select(admin_audit)
        .order_by(admin_audit.c.at.desc(), admin_audit.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as conn:
        return [
            AuditEntry(_aware(r.at), r.actor, r.action, r.target, r.detail, r.ip) for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class FailureCounts:
    by_ip: int
    by_account: int
    oldest: datetime | None  # the oldest failure counted: the lock lifts a window after it


def login_failures(engine: sa.Engine, *, ip: str, username: str, since: datetime) -> FailureCounts:
    """Failed logins since ``since`` from ``ip`` and against ``username``."""
    recent_rows = admin_login_failure.c.at >= since
    with engine.connect() as conn:
        by_ip = conn.execute(
            sa.select(sa.func.count()).where(recent_rows, admin_login_failure.c.ip == ip[:64])
        ).scalar()
        by_account = conn.execute(
            sa.select(sa.func.count()).where(recent_rows, admin_login_failure.c.username == username[:64])
        ).scalar()
        oldest = conn.execute(
            sa.select(sa.func.min(admin_login_failure.c.at)).where(
                recent_rows,
                sa.or_(admin_login_failure.c.ip == ip[:64], admin_login_failure.c.username == username[:64]),
            )
        ).scalar()
    return FailureCounts(int(by_ip or 0), int(by_account or 0), _aware(oldest) if oldest else None)


def record_login_failure(engine: sa.Engine, *, ip: str, username: str, now: datetime) -> int:
    """Count one login attempt as failed until it succeeds (and forget the rows too old to matter).

    Written before the password is checked, so that parallel guesses all see each other: at most the
    allowed number of attempts per window ever reach the password check. Returns the row's id.
    """
    with engine.begin() as conn:
        conn.execute(admin_login_failure.delete().where(admin_login_failure.c.at < now - KEEP_FAILURES))
        key = conn.execute(
            admin_login_failure.insert().values(at=now, ip=ip[:64], username=username[:64])
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def forget_login_failure(engine: sa.Engine, failure_id: int) -> None:
    """Drop one counted attempt (one refused while locked out does not extend the lock)."""
    with engine.begin() as conn:
        conn.execute(admin_login_failure.delete().where(admin_login_failure.c.id == failure_id))


def clear_login_failures(engine: sa.Engine, *, username: str) -> None:
    """A successful login clears its account's count (the per-address count stays)."""
    with engine.begin() as conn:
        conn.execute(admin_login_failure.delete().where(admin_login_failure.c.username == username[:64]))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
