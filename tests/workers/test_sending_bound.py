"""The bound behind "a killed worker leaves at most pool_size rows uncertain", watched during a real run on
SQLite and PostgreSQL: whenever a message is handed to the transport, at most pool_size rows are `sending`."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline_helpers import DAY, delivery_states, make_config, subscribe
from smtp_server import FaultySmtpServer
from worker_helpers import sending_rows

from digest.mailer import SendOutcome, SmtpPool
from digest.pipeline import RunOptions, run_digest
from digest.store import db

POOL = 3


class WatchingTransport:
    """An SmtpPool that counts the `sending` rows each time a message is handed over, and holds each
    message a moment so that every connection is busy at once."""

    def __init__(self, pool: SmtpPool, engine: Any) -> None:
        self.pool = pool
        self.engine = engine
        self.seen: list[int] = []
        self.busy = 0
        self.most_busy = 0

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        self.seen.append(sending_rows(self.engine))
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(0.01)
            return await self.pool.send(sender, recipient, message)
        finally:
            self.busy -= 1


async def test_at_every_hand_over_at_most_pool_size_rows_are_sending(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server: FaultySmtpServer = smtp_server()
    config = make_config(
        tmp_path,
        hf_url=hf.base_url,
        smtp_port=server.port,
        db_url=db_url,
        smtp={"pool_size": POOL, "max_attempts": 2},
    )
    engine = db.open_database(config.database_url)
    emails = [f"r{i:02d}@example.org" for i in range(40)]
    for e in emails:
        subscribe(engine, e, "agent*")
    server.script("RCPT", "451 4.3.0 try later", to="r05@example.org")  # retried within the run
    server.script("RCPT", "550 5.1.1 no such user", to="r11@example.org")  # final
    async with SmtpPool(server.settings(pool_size=POOL)) as pool:
        transport = WatchingTransport(pool, engine)
        report = await run_digest(config, engine, DAY, transport, options=RunOptions(retry_base_s=0.05))  # type: ignore[arg-type]

    assert transport.most_busy == POOL, "every connection was in use at once"
    assert len(transport.seen) == 41  # 40 digests and one retry
    # Under batch-wise recording (outcomes written per batch of 4 x pool_size rows) this reached 4 x POOL.
    assert max(transport.seen) <= POOL, transport.seen
    assert report.status == "done" and report.sent == 39
    states = Counter(s for v in delivery_states(engine).values() for s in v)
    assert states == {"sent": 39, "failed": 1}
    engine.dispose()
