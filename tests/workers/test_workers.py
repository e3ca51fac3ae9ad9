"""Scale-out on PostgreSQL: real `digest worker` processes (and `serve`) deliver every digest exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from operate_helpers import serve_config, serve_day, start_serve, today_utc
from smtp_server import received_by
from worker_helpers import (
    SlowDataHandler,
    add_subscribers,
    defer_plan,
    pid_of_owner,
    run_finished,
    run_row,
    start_worker,
    states_by_email,
    stop,
    wait_until,
    worker_config,
)

from digest.config_load import load_config
from digest.demo.smtp_sink import SmtpSink
from digest.errors import ConfigError
from digest.pipeline import open_store

pytestmark = pytest.mark.postgres


def _jobs(engine: sa.Engine, task: str) -> list[dict[str, Any]]:
    query = sa.text("SELECT id, status, attempts, worker_id FROM procrastinate_jobs WHERE task_name = :t")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query, {"t": task}).mappings()]


def test_three_workers_deliver_5000_subscribers_exactly_once(
    tmp_path: Path, hf: Any, smtp_server: Any, postgres_url: str
) -> None:
    day = today_utc()
    serve_day(hf, day)
    server = smtp_server()
    configs = [
        worker_config(
            tmp_path / f"machine{i}", hf_url=hf.base_url, smtp_port=server.port, db_url=postgres_url
        )
        for i in range(3)
    ]
    engine = open_store(load_config(configs[0]))
    emails = add_subscribers(engine, 5000)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [start_worker(c, log) for c, log in zip(configs, logs, strict=True)]
    try:
        defer_plan(configs[0], day)
        wait_until(run_finished(engine, day), 240, "the run finished", logs)
        chunks = _jobs(engine, "digest.deliver_chunk")
        workers_used = {j["worker_id"] for j in chunks}
    finally:
        codes = stop(workers)
    assert run_row(engine, day)["status"] == "done"  # type: ignore[index]
    counts = received_by(server)
    assert set(counts) == set(emails)
    assert max(counts.values()) == 1
    assert Counter(states_by_email(engine).values()) == {"sent": 5000}
    assert len(chunks) == 10 and all(j["status"] == "succeeded" for j in chunks)
    assert len(workers_used) == 3  # the chunks really were spread over the three processes
    assert codes == [0, 0, 0]
    engine.dispose()


def test_a_worker_killed_mid_chunk_leaves_at_most_pool_size_rows_uncertain_and_no_duplicate(
    tmp_path: Path, hf: Any, postgres_url: str
) -> None:
    day = today_utc()
    serve_day(hf, day)
    # DATA takes 0.1 s: a worker spends nearly all its time with both connections in flight, and every
    # message it finished meanwhile (received, not yet recorded under batch-wise recording) would count.
    with SmtpSink(handler=SlowDataHandler(0.1)) as server:
        configs = [
            worker_config(
                tmp_path / f"machine{i}",
                hf_url=hf.base_url,
                smtp_port=server.port,
                db_url=postgres_url,
                chunk_size=100,
            )
            for i in range(3)
        ]
        engine = open_store(load_config(configs[0]))
        pool_size = load_config(configs[0]).smtp.pool_size
        emails = add_subscribers(engine, 600)
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        workers = [start_worker(c, log) for c, log in zip(configs, logs, strict=True)]
        try:
            defer_plan(configs[0], day)
            wait_until(lambda: len(server.messages) >= 60, 120, "60 messages sent", logs)
            coordinator = pid_of_owner(run_row(engine, day)["owner"])  # type: ignore[index]
            victim = next(w for w in workers if w.pid != coordinator)  # one that only runs chunks
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            wait_until(run_finished(engine, day), 240, "the run finished", logs)
            chunks = _jobs(engine, "digest.deliver_chunk")
        finally:
            stop(workers)
        counts = received_by(server)
    states = states_by_email(engine)
    assert max(counts.values()) == 1  # nobody got two digests
    uncertain = [e for e, s in states.items() if s == "uncertain"]
    # Only the messages the dead worker had in flight (one per connection) are left uncertain: each of
    # its senders recorded a finished message in the same transaction as its next claim.
    assert len(uncertain) <= pool_size == 2
    assert len(states) == 600 and set(states.values()) <= {"sent", "uncertain"}
    assert all(counts.get(e) == 1 for e, s in states.items() if s == "sent")
    assert set(counts) <= set(emails)
    assert any(j["attempts"] > 0 for j in chunks)  # the kill landed mid-chunk: that job was retried elsewhere
    assert all(j["status"] == "succeeded" for j in chunks)
    assert run_row(engine, day)["status"] == "done"  # type: ignore[index]
    engine.dispose()


def test_serve_and_two_workers_on_two_machines_agree(
    tmp_path: Path, hf: Any, smtp_server: Any, postgres_url: str
) -> None:
    day = today_utc()
    serve_day(hf, day)
    server = smtp_server()
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    serve_cfg = worker_config(
        machine_a, hf_url=hf.base_url, smtp_port=server.port, db_url=postgres_url, chunk_size=50
    )
    other_cfg = worker_config(
        machine_b, hf_url=hf.base_url, smtp_port=server.port, db_url=postgres_url, chunk_size=50
    )
    engine = open_store(load_config(serve_cfg))
    emails = add_subscribers(engine, 300)
    logs = [tmp_path / "serve.log", tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [start_worker(serve_cfg, logs[1]), start_worker(other_cfg, logs[2])]
    serving = start_serve(serve_cfg, logs[0])  # catch-up on start: today's run is due
    try:
        serving.wait_for_log("deferred the plan job", timeout=60)
        wait_until(run_finished(engine, day), 180, "the run finished", logs)
        health = serving.healthz()
        chunks = _jobs(engine, "digest.deliver_chunk")
        workers_used = {j["worker_id"] for j in chunks}
    finally:
        serve_code = serving.stop()[0] if serving.proc.poll() is None else serving.proc.returncode
        stop(workers)
    assert health["status"] == "ok"
    counts = received_by(server)
    assert set(counts) == set(emails) and max(counts.values()) == 1
    assert run_row(engine, day)["status"] == "done"  # type: ignore[index]
    assert len(chunks) == 6 and len(workers_used) == 2
    # serve deferred the plan (a later tick of its every-minute cron may defer it again: that one finds the
    # run done and sends nothing, as the counts above show)
    plans = _jobs(engine, "digest.plan")
    assert any(j["status"] == "succeeded" for j in plans)
    assert not any(j["status"] == "failed" for j in plans)
    assert serve_code == 0
    engine.dispose()


def test_workers_are_refused_with_sqlite(tmp_path: Path) -> None:
    config = serve_config(
        tmp_path,
        hf_url="http://127.0.0.1:9",
        smtp_port=25,
        db_url=f"sqlite:///{tmp_path / 'd.db'}",
        workers={"enabled": True},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "workers.enabled: worker processes need PostgreSQL" in str(caught.value)


def test_digest_worker_refuses_to_start_without_workers_enabled(tmp_path: Path, postgres_url: str) -> None:
    config = serve_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=25, db_url=postgres_url)
    done = subprocess.run(
        ["python", "-m", "digest", "--config", str(config), "worker"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "workers.enabled: set it to true" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_procrastinate_schema_is_created_once_and_only_with_workers_enabled(
    tmp_path: Path, postgres_url: str
) -> None:
    from digest.store.job_queue import ensure_schema

    (tmp_path / "plain").mkdir()
    plain = serve_config(tmp_path / "plain", hf_url="http://127.0.0.1:9", smtp_port=25, db_url=postgres_url)
    engine = open_store(load_config(plain))

    def has_queue() -> bool:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None

    assert not has_queue()  # PostgreSQL without workers: no procrastinate tables
    on = worker_config(tmp_path / "on", hf_url="http://127.0.0.1:9", smtp_port=25, db_url=postgres_url)
    open_store(load_config(on)).dispose()
    assert has_queue()
    assert ensure_schema(engine) is False  # applied again: nothing to do, nothing broken
    engine.dispose()
