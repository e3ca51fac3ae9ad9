"""A rerun of a finished date says plainly that it sent nothing, and logs its JSON `run` line like any run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import DAY, make_config, subscribe

from digest.logs import JsonFormatter
from digest.mailer import SmtpPool
from digest.pipeline import RunOptions, run_digest
from digest.store import db


async def test_a_rerun_of_a_finished_date_reports_nothing_sent_and_logs_its_run_line(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server()
    config = make_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(config.database_url)
    subscribe(engine, "ada@example.org", "agent*")
    subscribe(engine, "cy@example.org", "title:video", "org:Google")

    async with SmtpPool(server.settings(pool_size=2)) as pool:
        first = await run_digest(config, engine, DAY, pool, options=RunOptions(retry_base_s=0.05))
    assert (first.status, first.sent) == ("done", 2)

    caplog.set_level(logging.INFO, logger="digest")
    caplog.clear()  # only the rerun's records (an earlier test may have left "digest" at INFO already)
    async with SmtpPool(server.settings(pool_size=2)) as pool:
        again = await run_digest(config, engine, DAY, pool, options=RunOptions(retry_base_s=0.05))
    engine.dispose()

    assert len(server.messages) == 2
    assert again.status == "done"
    assert (again.sent, again.failed, again.subscribers, again.messages_per_s) == (0, 0, 0, 0.0)
    assert any(
        "already finished (2 sent, 0 failed, 0 uncertain then): nothing was sent now" in p
        for p in again.problems
    )
    runs = [r for r in caplog.records if hasattr(r, "run")]
    assert len(runs) == 1, "one JSON run line per run, the rerun included"
    line = json.loads(JsonFormatter().format(runs[0]))
    assert line["run"]["status"] == "done" and line["run"]["sent"] == 0
    assert "already finished" in line["run"]["problems"][0]
