"""`digest bounces` and `digest subscribers --json` as an operator runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from feedback_helpers import NOW, sample

from digest.feedback import Settings, process_message
from digest.models import SubscriberStatus
from digest.store import db
from digest.store.subscribers import add_subscriber


def digest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    done = digest("init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    engine = db.open_database(f"sqlite:///{tmp_path / 'data' / 'digest.db'}")
    for address in ("ghost@users.example.net", "alice@users.example.net"):
        add_subscriber(engine, address, ["diffusion"], now=NOW, status=SubscriberStatus.ACTIVE)
    settings = Settings(secret=(tmp_path / "data" / "secret_key").read_text().strip(), bounce_address=None)
    process_message(engine, settings, sample("postfix-3.7-user-unknown.eml"), source="lmtp", now=NOW)
    process_message(engine, settings, b"\x00 garbage", source="imap", now=NOW + timedelta(days=1))
    engine.dispose()
    return tmp_path


def test_bounces_lists_each_message_and_what_it_did(workspace: Path) -> None:
    done = digest("bounces", cwd=workspace)

    assert done.returncode == 0, done.stderr
    assert "ghost@users.example.net" in done.stdout
    assert "marked bounced" in done.stdout
    assert "received: 1 hard, 1 unreadable" in done.stdout


def test_bounces_since_a_day_leaves_out_what_came_before(workspace: Path) -> None:
    later = (NOW + timedelta(days=1)).date().isoformat()

    done = digest("bounces", "--since", later, cwd=workspace)

    assert "ghost@users.example.net" not in done.stdout
    assert "received: 1 unreadable" in done.stdout
    bad = digest("bounces", "--since", "yesterday", cwd=workspace)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --since: expected YYYY-MM-DD")


def test_subscribers_json_shows_hard_bounces_and_the_last_failure_reply(workspace: Path) -> None:
    done = digest("subscribers", "--json", cwd=workspace)

    rows = {r["email"]: r for r in json.loads(done.stdout)}
    assert rows["ghost@users.example.net"]["status"] == "bounced"
    assert rows["ghost@users.example.net"]["hard_bounces"] == 1
    assert "550 5.1.1" in rows["ghost@users.example.net"]["last_failure"]
    assert (
        rows["alice@users.example.net"]["hard_bounces"],
        rows["alice@users.example.net"]["last_failure"],
    ) == (0, None)
