"""``/healthz`` answers 503 when the last run failed or the scheduled run did not succeed on time, so the
Dockerfile's HEALTHCHECK reports the container unhealthy; the reason only for a loopback caller."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from web_helpers import NOW, Web

from digest.store.tables import run

# NOW is 09:30 UTC on 2 March; the default cron runs at 07:00 UTC. The app starts at NOW.
NEXT_MORNING = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _add_run(web: Web, day: date, status: str, **values: object) -> None:
    with web.engine.begin() as conn:
        conn.execute(sa.insert(run).values(run_date=day, status=status, started_at=NOW, **values))


async def _get(web: Web) -> tuple[int, dict[str, object]]:
    answer = await web.client.get("/healthz")
    return answer.status_code, answer.json()


async def test_a_failed_last_run_is_a_503_with_the_reason_for_loopback_only(web_factory: object) -> None:
    public = await web_factory()  # type: ignore[operator]
    local = await web_factory(ip="127.0.0.1")  # type: ignore[operator]
    assert (await _get(public))[0] == 200
    _add_run(public, date(2026, 3, 2), "failed", error="SMTP down")
    code, body = await _get(public)
    assert code == 503 and body["status"] == "unhealthy" and "reason" not in body
    code, body = await _get(local)
    assert code == 503 and body["reason"] == "the last run (for 2026-03-02) failed"


async def test_a_scheduled_run_that_never_happened_is_a_503_until_one_succeeds(web_factory: object) -> None:
    public = await web_factory()  # type: ignore[operator]
    local = await web_factory(ip="::1")  # type: ignore[operator]
    _add_run(public, date(2026, 3, 2), "done")
    public.clock.now = NEXT_MORNING + timedelta(minutes=30)  # inside the grace: the run may still start
    assert (await _get(public))[0] == 200
    public.clock.now = NEXT_MORNING + timedelta(hours=2)  # the 07:00 run of 3 March never came
    code, body = await _get(public)
    assert code == 503 and "reason" not in body
    code, body = await _get(local)
    assert code == 503 and str(body["reason"]).startswith("no run for 2026-03-03, due at 2026-03-03T07:00:00")
    # A long run with a fresh heartbeat is on schedule; a stalled one is not; a finished one is.
    _add_run(public, date(2026, 3, 3), "running", heartbeat_at=public.clock.now - timedelta(seconds=10))
    assert (await _get(public))[0] == 200
    public.clock.now += timedelta(hours=1)
    code, body = await _get(local)
    assert code == 503 and "is running, not done" in str(body["reason"])
    with public.engine.begin() as conn:
        conn.execute(sa.update(run).where(run.c.run_date == date(2026, 3, 3)).values(status="done"))
    assert (await _get(public))[0] == 200


async def test_runs_due_before_the_process_started_are_not_held_against_it(web: Web) -> None:
    # No run at all for 2 March 07:00, but the app only started at 09:30: the next fire is judged.
    assert (await _get(web))[0] == 200


@pytest.fixture
def answering_503() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "unhealthy"}).encode()
            self.send_response(503)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()


def test_the_dockerfile_healthcheck_fails_on_a_503(answering_503: str) -> None:
    line = next(x for x in DOCKERFILE.read_text().splitlines() if x.strip().startswith('CMD ["python", "-c"'))
    argv = json.loads(line.strip().partition("CMD ")[2])
    check = subprocess.run(
        [sys.executable, *argv[1:]],
        env={"DIGEST_HEALTHCHECK_URL": answering_503, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=20,
    )
    assert check.returncode != 0
