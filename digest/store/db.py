"""Engine creation and migrations. SQLite gets WAL and foreign keys; PostgreSQL works the same."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from digest.errors import StoreError

#: The engine type for layers above the store: they type an engine with this and never import sqlalchemy.
Engine: TypeAlias = sa.Engine
#: One open connection (a transaction from ``transaction``), typed without importing sqlalchemy above the store.
Connection: TypeAlias = sa.Connection
#: Any error of the database layer (unreachable, locked, a conflict): callers that log and go on catch it.
DatabaseError: TypeAlias = sa.exc.SQLAlchemyError
#: A unique key or foreign key refused a write (another process got there first).
IntegrityError: TypeAlias = sa.exc.IntegrityError
#: The delivery loop holds one connection for its many small transactions (a fresh pool checkout per
#: message costs more than the claim itself); everything else passes the engine.
Bind: TypeAlias = sa.Engine | sa.Connection

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger(__name__)


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An Engine for ``url``; the SQLite folder is created when missing."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take it over. Every transaction starts with
        # BEGIN IMMEDIATE: a read-then-write transaction (the conditional claims) would otherwise fail with
        # SQLITE_BUSY_SNAPSHOT under WAL when another process wrote in between, instead of waiting its turn.
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    except Exception as exc:  # a bad URL or a missing driver
        raise StoreError(f"database.url: cannot use {redact(url)}: {exc}") from None


@contextmanager
def transaction(bind: Bind) -> Iterator[sa.Connection]:
    """One transaction on an engine or on a held connection (committed at the end either way)."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # each statement is its own transaction (see outbox.claim_one)
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def redact(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _alembic_config(engine: sa.Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (never drops data)."""
    try:
        with engine.begin() as conn:
            cfg = _alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except sa.exc.OperationalError as exc:
        raise StoreError(f"database {redact(str(engine.url))}: {exc.orig}") from None


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config(sa.create_engine("sqlite://"))).get_current_head()


def open_database(url: str, *, migrate: bool = True) -> sa.Engine:
    """Create the engine and (by default) apply pending migrations."""
    engine = create_engine(url)
    if migrate:
        upgrade(engine)
    return engine
