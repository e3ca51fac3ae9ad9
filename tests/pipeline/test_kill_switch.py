"""The kill switch, with real runs against the aiosmtpd test server on SQLite and PostgreSQL: while sending
is paused nothing is claimed by any process; a message already in flight finishes; after the release
everything goes, once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pipeline_helpers import DAY, NOW, delivery_states, mails_to, make_config, subscribe
from smtp_server import FaultySmtpServer

from digest.mailer import SendOutcome, SmtpPool
from digest.pipeline import RunOptions, run_digest
from digest.store import db, outbox
from digest.store.settings import pause_sending, release_sending, sending_pause

FAST = RunOptions(retry_base_s=0.05)
PEOPLE = ("ada@example.org", "bo@example.org", "cy@example.org")


@pytest.fixture
def server(smtp_server: Any) -> FaultySmtpServer:
    return smtp_server()  # type: ignore[no-any-return]


async def run_once(config: Any, engine: sa.Engine, server: FaultySmtpServer, transport: Any = None) -> Any:
    async with SmtpPool(server.settings(pool_size=config.smtp.pool_size)) as pool:
        return await run_digest(config, engine, DAY, transport or pool, options=FAST)


def three_subscribers(engine: sa.Engine) -> None:
    for address in PEOPLE:
        subscribe(engine, address, "agent*")


async def test_nothing_is_claimed_while_paused_and_everything_goes_after_release(
    tmp_path: Path, hf: Any, server: FaultySmtpServer, db_url: str
) -> None:
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(config.database_url)
    three_subscribers(engine)
    assert pause_sending(engine, by="ops", reason="relay maintenance", now=NOW)

    paused = await run_once(config, engine, server)

    assert server.messages == [], "nothing may be sent while paused"
    assert paused.sent == 0 and paused.status == "incomplete"
    assert any("kill switch" in p for p in paused.problems), "reported as paused, not as an SMTP failure"
    assert delivery_states(engine) == {a: ["pending"] for a in PEOPLE}, "planned, never claimed"
    # Another process trying to claim a due row directly is refused by the claim statement itself.
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, run_id, subscriber_id FROM delivery")).all()
    row = outbox.Due(rows[0].id, rows[0].run_id, rows[0].subscriber_id, [], "pending")
    assert outbox.claim_one(engine, row, NOW) is None

    assert release_sending(engine)
    released = await run_once(config, engine, server)

    assert released.status == "done" and released.sent == 3
    for address in PEOPLE:
        assert len(mails_to(server.messages, address)) == 1
    assert delivery_states(engine) == {a: ["sent"] for a in PEOPLE}
    again = await run_once(config, engine, server)
    assert again.status == "done" and len(server.messages) == 3, "the release never sends twice"
    engine.dispose()


class PausingTransport:
    """Throws the switch while the first message is in flight (as an operator would, from another process)."""

    def __init__(self, pool: SmtpPool, engine: sa.Engine) -> None:
        self.pool = pool
        self.engine = engine
        self.calls = 0

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        self.calls += 1
        if self.calls == 1:
            pause_sending(self.engine, by="ops", reason="", now=NOW + timedelta(minutes=1))
        return await self.pool.send(sender, recipient, message)


async def test_a_message_in_flight_when_paused_finishes_and_the_rest_wait(
    tmp_path: Path, hf: Any, server: FaultySmtpServer, db_url: str
) -> None:
    config = make_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, smtp={"pool_size": 1}
    )
    engine = db.open_database(config.database_url)
    three_subscribers(engine)
    async with SmtpPool(server.settings(pool_size=1)) as pool:
        transport = PausingTransport(pool, engine)
        report = await run_digest(config, engine, DAY, transport, options=FAST)  # type: ignore[arg-type]

    assert transport.calls == 1 and len(server.messages) == 1
    states = sorted(s for v in delivery_states(engine).values() for s in v)
    assert states == ["pending", "pending", "sent"]
    assert report.sent == 1 and sending_pause(engine).paused

    release_sending(engine)
    await run_once(config, engine, server)
    assert len(server.messages) == 3
    assert sorted(s for v in delivery_states(engine).values() for s in v) == ["sent"] * 3
    engine.dispose()
