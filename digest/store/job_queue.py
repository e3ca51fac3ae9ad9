"""The SQL of the procrastinate scale-out: its schema, the delivery chunks, and what became of their jobs.

procrastinate owns its tables (``procrastinate_*``); we only create them (its own schema, once) and read the
status of the jobs a run deferred.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from procrastinate.schema import SchemaManager

from digest.models import DeliveryState
from digest.store.db import transaction
from digest.store.runs import UNCERTAIN_REPLY
from digest.store.tables import delivery

#: Serialises concurrent schema creation (two processes starting at once); any constant works.
_SCHEMA_LOCK = 0x70D16E57


def libpq_url(url: str) -> str:
    """The plain ``postgresql://`` URL (psycopg/libpq) of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_schema(engine: sa.Engine) -> bool:
    """Create procrastinate's own schema when it is missing (idempotent); True when it was created."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        if conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return False
        # Several statements in one call: psycopg runs them when no parameters are passed.
        conn.connection.dbapi_connection.cursor().execute(SchemaManager.get_schema())  # type: ignore[union-attr]
    return True


_DUE_STATES = (DeliveryState.PENDING, DeliveryState.RETRY)


def chunk_bounds(engine: sa.Engine, run_ids: Sequence[int], size: int) -> list[tuple[int, int]]:
    """The due (pending or retry) rows of these runs cut in id ranges of at most ``size`` rows each."""
    query = (
        sa.select(delivery.c.id)
        .where(delivery.c.run_id.in_(list(run_ids)), delivery.c.state.in_(_DUE_STATES))
        .order_by(delivery.c.id)
    )
    bounds: list[tuple[int, int]] = []
    with engine.connect() as conn:
        ids = [row_id for (row_id,) in conn.execute(query)]
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        bounds.append((part[0], part[-1]))
    return bounds


def strand_in_flight(
    engine: sa.Engine, run_ids: Sequence[int], id_range: tuple[int, int], now: datetime
) -> int:
    """Rows of a chunk left in ``sending`` by its dead worker become ``uncertain`` (RFC 1047: not resent).

    Only the chunk's own job ever claims rows of its range, so on a retry of that job these rows are
    exactly the messages the dead attempt had in flight.
    """
    with transaction(engine) as conn:
        return int(
            conn.execute(
                delivery.update()
                .where(
                    delivery.c.run_id.in_(list(run_ids)),
                    delivery.c.id.between(*id_range),
                    delivery.c.state == DeliveryState.SENDING,
                )
                .values(state=DeliveryState.UNCERTAIN, last_reply=UNCERTAIN_REPLY, updated_at=now)
            ).rowcount
        )


def open_jobs(engine: sa.Engine, job_ids: Sequence[int]) -> tuple[int, int]:
    """(still to do or running, failed) among these procrastinate jobs."""
    query = sa.text(
        "SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')),"
        " count(*) FILTER (WHERE status IN ('failed', 'aborted', 'cancelled'))"
        " FROM procrastinate_jobs WHERE id = ANY(:ids)"
    )
    with engine.connect() as conn:
        row = conn.execute(query, {"ids": list(job_ids)}).one()
    return int(row[0] or 0), int(row[1] or 0)
