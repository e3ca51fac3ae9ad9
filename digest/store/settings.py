"""Operator switches kept in the database, so that every process (``serve``, workers, a CLI run) obeys them.

The kill switch: while the ``sending_paused`` row exists, no outbox row can be claimed. The claim
statement itself carries the condition (``sending_allowed``), so there is no window between a check and a
claim; messages already claimed (in flight) finish as usual. Releasing deletes the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from digest.store.tables import setting

SENDING_PAUSED = "sending_paused"


def sending_allowed() -> sa.ColumnElement[bool]:
    """A condition for the claim (and due-row) statements: true unless sending is paused."""
    paused = sa.select(setting.c.key).where(setting.c.key == SENDING_PAUSED)
    return ~sa.exists(paused)


@dataclass(frozen=True)
class PauseState:
    paused: bool
    since: datetime | None = None
    by: str | None = None
    reason: str = ""


def sending_pause(engine: sa.Engine) -> PauseState:
    """Whether sending is paused, since when, by whom and why."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(setting).where(setting.c.key == SENDING_PAUSED)).first()
    if row is None:
        return PauseState(False)
    since = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return PauseState(True, since, row.updated_by, row.value)


def pause_sending(engine: sa.Engine, *, by: str, reason: str, now: datetime) -> bool:
    """Stop every new claim until ``release_sending``. False when it was already paused."""
    try:
        with engine.begin() as conn:
            conn.execute(
                setting.insert().values(
                    key=SENDING_PAUSED, value=reason[:500], updated_at=now, updated_by=by[:64]
                )
            )
    except sa.exc.IntegrityError:
        return False
    return True


def release_sending(engine: sa.Engine) -> bool:
    """Let claims happen again. False when sending was not paused."""
    with engine.begin() as conn:
        return bool(conn.execute(setting.delete().where(setting.c.key == SENDING_PAUSED)).rowcount)
