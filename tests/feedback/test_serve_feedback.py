"""`digest serve` runs the LMTP listener and the webhook: a real process takes a bounce over LMTP and a
complaint over HTTP, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from feedback_helpers import SECRET, add_active, add_delivery, sample, status_of, verp

from digest.store import db

HOOK_SECRET = "serve-webhook-secret-0123456789"


def log_record(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if text in line:
                try:
                    return dict(json.loads(line))
                except ValueError:
                    return {"message": line}
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the log:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_HOOK": HOOK_SECRET,
        "PYTHONUNBUFFERED": "1",
    }


def test_serve_takes_bounces_over_lmtp_and_complaints_over_the_webhook(
    tmp_path: Path, serve_env: dict[str, str]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'digest.db'}"
    engine = db.open_database(db_url)
    ghost = add_active(engine, "ghost@users.example.net")
    delivery_id = add_delivery(engine, ghost)
    add_active(engine, "ada@example.org")
    (tmp_path / "config.toml").write_text(
        f"""
[database]
url = "{db_url}"
[schedule]
catch_up = false
[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
[web]
host = "127.0.0.1"
port = 0
[bounces]
address = "bounces@lists.example.org"
lmtp_listen = "127.0.0.1:0"
webhook_secret_env = "DIGEST_HOOK"
"""
    )
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(tmp_path / "config.toml"), "serve"],
            env=serve_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    try:
        lmtp_port = int(log_record(log, "taking bounces over LMTP", proc)["lmtp_port"])
        web_port = int(log_record(log, "serving on", proc)["port"])

        dsn = sample("postfix-3.7-user-unknown.eml", delivery_id)
        client = smtplib.LMTP("127.0.0.1", lmtp_port)
        client.sendmail("", [verp(delivery_id)], dsn)
        client.quit()

        request = urllib.request.Request(
            f"http://127.0.0.1:{web_port}/webhooks/bounce",
            data=json.dumps({"email": "ada@example.org", "type": "complaint", "reason": "abuse"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {HOOK_SECRET}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        wrong = urllib.request.Request(
            request.full_url, data=request.data, headers={"X-Webhook-Secret": "nope"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=10)
        assert refused.value.code == 403

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert status_of(engine, "ghost@users.example.net") == "bounced"
    assert status_of(engine, "ada@example.org") == "unsubscribed"
    with engine.connect() as conn:
        sources = sorted(r for (r,) in conn.exec_driver_sql("SELECT source FROM feedback"))
    assert sources == ["lmtp", "webhook"]
    engine.dispose()
