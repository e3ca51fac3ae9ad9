"""Fixtures for the web tests: the app in-process over httpx's ASGI transport, a real SMTP server
(aiosmtpd on loopback) behind the real SmtpPool, a SQLite database with a week of papers, a settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from web_helpers import BASE, NOW, SECRET, Clock, Web, make_config, week_of_papers

from digest.config import Config
from digest.demo.smtp_sink import SmtpSink
from digest.mailer import SmtpPool, SmtpSettings
from digest.store import db
from digest.store.papers import upsert_papers
from digest.web import create_app


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def papers_engine(sqlite_engine: sa.Engine) -> sa.Engine:
    upsert_papers(sqlite_engine, week_of_papers(NOW.date()), NOW)
    return sqlite_engine


@pytest.fixture
def any_engine(db_url: str) -> Iterator[sa.Engine]:
    """A migrated database with the week of papers, on SQLite and on PostgreSQL."""
    engine = db.open_database(db_url)
    upsert_papers(engine, week_of_papers(NOW.date()), NOW)
    yield engine
    engine.dispose()


WebFactory = Callable[..., Any]


@pytest.fixture
async def web_factory(
    papers_engine: sa.Engine, sink: SmtpSink, clock: Clock, tmp_path: Path
) -> AsyncIterator[WebFactory]:
    """``await web_factory(**create_app_kwargs)``: a Web with its own client (and IP)."""
    pools: list[SmtpPool] = []
    clients: list[httpx.AsyncClient] = []

    async def make(
        *,
        ip: str = "192.0.2.10",
        config: Config | None = None,
        engine: sa.Engine | None = None,
        **kwargs: Any,
    ) -> Web:
        cfg = config or make_config(tmp_path, sink.port)
        pool = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=sink.port, security="none", timeout_s=5, pool_size=1)
        )
        await pool.__aenter__()
        pools.append(pool)
        db = engine or papers_engine
        app = create_app(cfg, db, pool, clock=clock, **kwargs)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url=BASE, follow_redirects=False
        )
        clients.append(client)
        return Web(client=client, engine=db, sink=sink, clock=clock, config=cfg, app=app)

    yield make
    for client in clients:
        await client.aclose()
    for pool in pools:
        await pool.__aexit__(None, None, None)


@pytest.fixture
async def web(web_factory: WebFactory) -> Web:
    return await web_factory()  # type: ignore[no-any-return]
