"""The kill switch holds across processes: thrown in the database (as the console does), a `digest run` in
another process claims nothing; released, the next `digest run` sends everything, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_helpers import digest, point_at

from digest.demo.snapshot_server import SnapshotServer
from digest.store import db
from digest.store.settings import pause_sending, release_sending


def test_a_run_in_another_process_sends_nothing_until_the_switch_is_released(
    tmp_path: Path, hf: SnapshotServer, smtp_server: Any
) -> None:
    assert digest("init", cwd=tmp_path).returncode == 0
    server = smtp_server()
    point_at(tmp_path, hf.base_url, server)
    for address in ("ada@example.org", "bo@example.org"):
        assert digest("subscribe", address, "--rule", "agent*", "--confirmed", cwd=tmp_path).returncode == 0
    engine = db.open_database(f"sqlite:///{tmp_path / 'data' / 'digest.db'}")
    pause_sending(engine, by="ops", reason="test", now=datetime.now(UTC))

    paused = digest("run", "--date", "2026-08-21", cwd=tmp_path)
    assert paused.returncode != 0 and "kill switch" in paused.stdout + paused.stderr
    assert [m for m in server.messages if "ops@example.org" not in m.recipients] == []

    release_sending(engine)
    released = digest("run", "--date", "2026-08-21", cwd=tmp_path)
    assert released.returncode == 0, released.stdout + released.stderr
    digests = sorted(r for m in server.messages for r in m.recipients)
    assert digests == ["ada@example.org", "bo@example.org"]
    engine.dispose()
