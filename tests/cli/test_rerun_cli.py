"""`digest run` for a date that already finished: it says so plainly, and still logs its JSON `run` line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli_helpers import digest, subscribe_ada
from smtp_server import FaultySmtpServer


def test_a_rerun_prints_nothing_sent_and_logs_one_json_run_line(
    workspace: Path, mailing: FaultySmtpServer
) -> None:
    server = mailing
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
