"""`digest run` for a date that already finished: it says so plainly, and still logs its JSON `run` line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cli_helpers import digest, point_at, subscribe_ada

from digest.demo.snapshot_server import SnapshotServer


def test_a_rerun_prints_nothing_sent_and_logs_one_json_run_line(
    workspace: Path,
    hf: SnapshotServer,
    smtp_server: Any,
) -> None:
    server = smtp_server()
    point_at(workspace, hf.base_url, server)
    subscribe_ada(workspace)
    first = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert first.returncode == 0, first.stderr
    assert re.search(r"sent\s*│\s*1\b", first.stdout), first.stdout

    second = digest("run", "--date", "2026-08-21", cwd=workspace)
    assert second.returncode == 0, second.stderr
    assert len(server.messages) == 1
    assert re.search(r"sent\s*│\s*0\b", second.stdout), second.stdout
    assert re.search(r"messages/s\s*│\s*0\.0\b", second.stdout), second.stdout
    assert "already finished (1 sent" in " ".join(second.stderr.split())
    runs = [
        json.loads(line) for line in second.stderr.splitlines() if line.startswith("{") and '"run"' in line
    ]
    assert [(r["run"]["status"], r["run"]["sent"]) for r in runs] == [("done", 0)]
