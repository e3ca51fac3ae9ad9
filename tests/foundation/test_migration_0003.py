"""Migration 0003 (send times) on a database of the previous release with rows in it: SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command

from digest.store import db


def _at(engine: sa.Engine, revision: str) -> None:
    cfg = db._alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_upgrading_from_0002_dates_existing_deliveries_by_their_run_and_keeps_subscribers(
    db_url: str,
) -> None:
    engine = db.create_engine(db_url)
    _at(engine, "0002")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscriber (email, status, cadence, weekday, managed_by_config, created_at, updated_at,"
            " hard_bounces, token_version) VALUES ('ada@example.org', 'active', 'daily', 0, false,"
            " '2026-01-01 07:00:00+00', '2026-01-01 07:00:00+00', 0, 0)"
        )
        for day in ("2026-01-01", "2026-01-02"):
            conn.exec_driver_sql(
                "INSERT INTO run (run_date, status, started_at, papers_fetched)"
                f" VALUES ('{day}', 'done', '{day} 07:00:00+00', 3)"
            )
        conn.exec_driver_sql(
            "INSERT INTO delivery (run_id, subscriber_id, state, attempts, paper_ids, updated_at)"
            " SELECT run.id, subscriber.id, 'sent', 1, '[]', '2026-01-02 07:00:00+00' FROM run, subscriber"
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT run.run_date, delivery.local_date FROM delivery JOIN run ON run.id = delivery.run_id"
            " ORDER BY delivery.id"
        ).all()
        sub = conn.exec_driver_sql("SELECT email, send_time, timezone FROM subscriber").one()
    assert [(_d(run_day), _d(local)) for run_day, local in rows] == [
        (date(2026, 1, 1),) * 2,
        (date(2026, 1, 2),) * 2,
    ]
    assert tuple(sub) == ("ada@example.org", None, None), "existing subscribers follow [schedule]"
    # The new key holds: a second digest for the same subscriber and local date is refused.
    insert = (
        "INSERT INTO delivery (run_id, subscriber_id, local_date, state, attempts, paper_ids, updated_at)"
        " SELECT MAX(run.id), MAX(subscriber.id), '{day}', 'pending', 0, '[]', '2026-01-03 07:00:00+00'"
        " FROM run, subscriber"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO run (run_date, status, started_at, papers_fetched)"
            " VALUES ('2026-01-03', 'running', '2026-01-03 07:00:00+00', 0)"
        )
        conn.exec_driver_sql(insert.format(day="2026-01-03"))  # a new local date: fine
        conn.exec_driver_sql(
            "INSERT INTO run (run_date, status, started_at, papers_fetched)"
            " VALUES ('2026-01-04', 'running', '2026-01-04 07:00:00+00', 0)"
        )
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        # Another run, but a local date this subscriber already has a digest for.
        conn.exec_driver_sql(insert.format(day="2026-01-01"))
    engine.dispose()


def _d(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
