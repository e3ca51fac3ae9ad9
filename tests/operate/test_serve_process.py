"""`digest serve` as real processes: catch-up on start, two processes on one database, SIGTERM mid-run,
config subscribers synced on start. The schedule is every minute and catch-up is on, so a fresh start
runs today's digest at once (the legitimate production path, no test-only switch)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from operate_helpers import serve_config, serve_day, start_serve, today_utc
from pipeline_helpers import delivery_states, subscribe
from smtp_server import FaultySmtpServer, received_by

from digest.store import db
from digest.store.tables import run, subscriber


def run_rows(engine: sa.Engine) -> list[tuple[Any, str]]:
    with engine.connect() as conn:
        return [(r.run_date, r.status) for r in conn.execute(sa.select(run))]


def test_two_serve_processes_on_one_database_send_each_digest_once(
    tmp_path: Path, hf: Any, smtp_server: Any, db_url: str
) -> None:
    server: FaultySmtpServer = smtp_server()
    day = today_utc()
    serve_day(hf, day)
    config = serve_config(tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url)
    engine = db.open_database(db_url)
    emails = [f"r{i:02d}@example.org" for i in range(12)]
    for e in emails:
        subscribe(engine, e, "agent*")

    procs = [start_serve(config, tmp_path / f"serve{i}.log") for i in range(2)]
    try:
        for p in procs:
            assert p.healthz()["status"] in ("ok", "alert")
        deadline = time.monotonic() + 20
        while run_rows(engine) != [(day, "done")] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a late second catch-up would show up now
        results = [p.stop() for p in procs]
    finally:
        for p in procs:
            p.kill()

    assert received_by(server) == dict.fromkeys(emails, 1), [p.dump() for p in procs]
    assert [code for code, _ in results] == [0, 0]
    # Each process either caught up (one sent, the other found it locked or done) or saw it done already.
    statuses = [
        rec["run"]["status"] for p in procs for rec in p.logs() if "finished:" in str(rec.get("message"))
    ]
    assert statuses.count("done") >= 1 and set(statuses) <= {"done", "locked"}, statuses
    assert run_rows(engine) == [(day, "done")]
    engine.dispose()


def test_sigterm_mid_run_exits_promptly_and_a_restart_delivers_every_digest_once(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    day = today_utc()
    serve_day(hf, day)
    db_url = f"sqlite:///{tmp_path / 'digest.db'}"
    config = serve_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, smtp={"rate_per_s": 15}
    )
    engine = db.open_database(db_url)
    emails = [f"r{i:02d}@example.org" for i in range(30)]
    for e in emails:
        subscribe(engine, e, "agent*")

    first = start_serve(config, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 20
        while len(server.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 5 <= len(server.messages) < 30, first.dump()
        code, seconds = first.stop()
    finally:
        first.kill()
    assert code == 0, first.dump()
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    stopped_at = len(server.messages)
    assert stopped_at < 30, "the run was still going when SIGTERM came"
    assert run_rows(engine) == [(day, "interrupted")]
    assert "sending" not in [s for v in delivery_states(engine).values() for s in v]

    second = start_serve(config, tmp_path / "second.log")
    try:
        second.wait_for_log("catching up the missed run")
        second.wait_for_log(f"run {day} finished", timeout=25)
        assert second.stop()[0] == 0
    finally:
        second.kill()
    got = received_by(server)
    states = delivery_states(engine)
    for e in emails:
        assert states[e] in (["sent"], ["uncertain"]), f"{e}: {states[e]}"
        assert got.get(e) == 1 if states[e] == ["sent"] else got.get(e, 0) <= 1, e
    assert run_rows(engine) == [(day, "done")]
    engine.dispose()


def test_config_subscribers_are_synced_on_start_and_removed_ones_unsubscribed(
    tmp_path: Path, hf: Any, smtp_server: Any
) -> None:
    server: FaultySmtpServer = smtp_server()
    day = today_utc()
    serve_day(hf, day)
    db_url = f"sqlite:///{tmp_path / 'digest.db'}"
    managed = [
        {"email": "lab@example.org", "rules": ["agent*"], "name": "Lab"},
        {"email": "old@example.org", "rules": ["zebrafish"]},
    ]
    config = serve_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, subscribers=managed
    )
    proc = start_serve(config, tmp_path / "a.log")
    try:
        proc.wait_for_log(f"run {day} finished")
        assert proc.stop()[0] == 0
    finally:
        proc.kill()
    assert received_by(server) == {"lab@example.org": 1}, "the synced subscriber got today's digest"

    config = serve_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, subscribers=managed[:1]
    )
    proc = start_serve(config, tmp_path / "b.log")
    try:
        synced = proc.wait_for_log("config subscribers synced")
        assert synced["sync"] == {"unsubscribed": ["old@example.org"]}
        proc.port()
        assert proc.stop()[0] == 0
    finally:
        proc.kill()
    engine = db.open_database(db_url)
    with engine.connect() as conn:
        rows = {r.email: (r.status, r.managed_by_config) for r in conn.execute(sa.select(subscriber))}
    assert rows == {"lab@example.org": ("active", True), "old@example.org": ("unsubscribed", False)}
    assert received_by(server) == {"lab@example.org": 1}, "a restart the same day sends nothing again"
    engine.dispose()
