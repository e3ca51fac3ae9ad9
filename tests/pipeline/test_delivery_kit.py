"""The chunks of one run share a kit (what a worker keeps between its chunk jobs): the papers are read and
the matcher built once, every subscriber still gets exactly their one digest, and a new run starts afresh."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import DAY, delivered, mails_to, make_config, subscribe
from smtp_server import FaultySmtpServer

from digest import selection
from digest.delivery import Delivery, RunOptions
from digest.mailer import SmtpPool
from digest.models import RunReport
from digest.pipeline import run_digest
from digest.selection import DeliveryKit
from digest.store import db, outbox

READERS = [(f"r{i}@example.org", ("agent*", "title:video", "org:Google")[i % 3]) for i in range(9)]


async def test_the_chunks_of_a_run_share_papers_and_matcher_and_each_reader_gets_one_digest(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: FaultySmtpServer = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(config.database_url)
    for address, rule in READERS:
        subscribe(engine, address, rule)
    dispatched: list[tuple[Sequence[int], date]] = []

    async def keep(run_ids: Sequence[int], run_date: date) -> None:
        dispatched.append((run_ids, run_date))

    async with SmtpPool(server.settings()) as pool:
        await run_digest(config, engine, DAY, pool, options=RunOptions(dispatch=keep))  # planned, not sent
    (run_ids, run_date) = dispatched[0]
    rows = outbox.due_deliveries(engine, run_ids, datetime.now(UTC), 100)
    assert len(rows) == len(READERS)
    middle = rows[len(rows) // 2].id

    reads: list[int] = []
    real_read = selection.papers_by_ids
    monkeypatch.setattr(
        selection, "papers_by_ids", lambda e, ids: reads.append(len(ids)) or real_read(e, ids)
    )
    kit = DeliveryKit.for_config(config, engine)
    matchers = []
    async with SmtpPool(server.settings()) as pool:
        for first, last in ((rows[0].id, middle - 1), (middle, rows[-1].id)):
            chunk = Delivery(
                config,
                engine,
                pool,
                RunReport(run_date=run_date),
                options=RunOptions(id_range=(first, last), kit=kit),
            )
            await chunk.deliver(run_ids, run_date)
            matchers.append(kit.selection(run_ids, run_date).matcher_for(()))

    assert matchers[0] is matchers[1], "the second chunk used the first one's matcher"
    assert len(reads) == 1, f"papers read once for the run, not per chunk: {reads}"
    for address, _ in READERS:
        assert len(mails_to(server.messages, address)) == 1, address
        assert delivered(engine, address)
    engine.dispose()


def test_a_new_run_starts_a_fresh_selection_with_the_papers_as_stored_then(
    tmp_path: Path, db_url: str
) -> None:
    config = make_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=9, db_url=db_url)
    engine = db.open_database(config.database_url)
    kit = DeliveryKit.for_config(config, engine)
    today = kit.selection([1], DAY)
    assert kit.selection([1], DAY) is today, "the same run keeps its selection"
    assert kit.selection([1, 2], DAY) is not today, "other runs (a retry run joined) start afresh"
    assert kit.selection([1], DAY + timedelta(days=1)) is not kit.selection([1], DAY)
    engine.dispose()
