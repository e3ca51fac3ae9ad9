"""Shared fixtures: the captured HF responses, databases (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from smtp_server import smtp_server  # the fault-injecting SMTP server fixture, for every test

from digest.store import db

__all__ = ["smtp_server"]

ROOT = Path(__file__).resolve().parents[1]
HF_FIXTURES = ROOT.parent / "shared" / "fixtures" / "hf"
PG_URL_ENV = "DIGEST_TEST_PG_URL"


@pytest.fixture(scope="session")
def hf_fixtures() -> Path:
    """../shared/fixtures/hf: real captured Hugging Face responses."""
    assert HF_FIXTURES.is_dir(), f"{HF_FIXTURES} is missing: ../shared must sit beside the checkout"
    return HF_FIXTURES


def _backends() -> list[str]:
    return ["sqlite", "postgres"]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server that scripts/test started."""
    base = os.environ.get(PG_URL_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"${PG_URL_ENV} is not set: scripts/test starts PostgreSQL and sets it")
        pytest.skip(f"${PG_URL_ENV} not set (scripts/test sets it)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """A migrated database engine (SQLite and PostgreSQL)."""
    eng = db.open_database(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    eng = db.open_database(sqlite_url)
    yield eng
    eng.dispose()


CHROMIUM = os.environ.get("DIGEST_CHROMIUM", "/usr/bin/chromium")
#: Debian's chromium headless as root, with nothing reaching for the (closed) network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (scripts/test installs it)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
