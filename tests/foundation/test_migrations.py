"""The schema comes from the shipped migrations, on SQLite and PostgreSQL alike, and matches the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from digest.store import db
from digest.store.tables import metadata


def test_migrations_build_every_table_from_an_empty_database(engine: sa.Engine) -> None:
    tables = set(sa.inspect(engine).get_table_names())
    assert {"paper", "subscriber", "rule", "run", "delivery", "delivered_paper", "alert"} <= tables
    assert db.current_revision(engine) == db.head_revision()


def test_the_migrated_schema_matches_the_models(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrading_twice_keeps_the_data(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO alert (day, problem, detail, created_at) VALUES ('2026-01-01', 'x', 'kept', '2026-01-01 00:00:00+00')"
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT detail FROM alert").scalar() == "kept"


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_engine: sa.Engine) -> None:
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_an_upgrade_from_the_first_release_keeps_every_row(db_url: str) -> None:
    from alembic import command

    engine = db.create_engine(db_url)
    cfg = db._alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO run (run_date, status, started_at, papers_fetched) VALUES ('2026-01-01', 'done', '2026-01-01 07:00:00+00', 3)"
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision() != "0001"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT papers_fetched FROM run").scalar() == 3
    assert "ix_delivery_run_id_id" in {i["name"] for i in sa.inspect(engine).get_indexes("delivery")}
    engine.dispose()
