"""`digest import`, `digest export` and `digest subscribe --send-time` as an operator runs them (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import digest


def test_import_reports_bad_rows_by_line_with_a_caret_and_imports_nothing(workspace: Path) -> None:
    bad = workspace / "people.csv"
    bad.write_text(
        "email,rules,send_time,timezone\n"
        "ok@example.org,diffusion,07:30,Asia/Tokyo\n"
        'rules@example.org,"agents; title:(agent OR",,\n'
        "zone@example.org,diffusion,07:30,Mars/Olympus\n",
        encoding="utf-8",
    )
    result = digest("import", "people.csv", "--confirmed", cwd=workspace)
    assert result.returncode == 1
    err = result.stderr + result.stdout
    assert "people.csv:3: rules: rule 2:" in err and "title:(agent OR" in err and "^" in err
    assert "people.csv:4:" in err and "Mars/Olympus" in err and "nothing was imported" in err
    assert "Traceback" not in err
    listed = digest("subscribers", "--json", cwd=workspace)
    assert json.loads(listed.stdout) == []


def test_import_then_export_round_trips_and_subscribe_takes_a_send_time(workspace: Path) -> None:
    good = workspace / "people.csv"
    good.write_text(
        "email,name,rules,cadence,weekday,send_time,timezone,status\n"
        "ada@example.org,Ada,diffusion; agent*,weekly,fri,07:30,Asia/Tokyo,active\n",
        encoding="utf-8",
    )
    imported = digest("import", "people.csv", "--confirmed", cwd=workspace)
    assert imported.returncode == 0, imported.stderr
    assert "1 created, 0 updated" in imported.stdout
    added = digest(
        "subscribe", "bo@example.org", "--rule", "robot*", "--confirmed", "--send-time", "6:45",
        "--timezone", "Europe/Berlin", cwd=workspace,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "at 06:45 Europe/Berlin" in added.stdout
    refused = digest("subscribe", "cy@example.org", "--rule", "x", "--send-time", "6:50", cwd=workspace)
    assert refused.returncode == 1 and "quarter hour" in refused.stderr + refused.stdout
    exported = digest("export", cwd=workspace)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == [
        "email,name,rules,cadence,weekday,send_time,timezone,status",
        "ada@example.org,Ada,diffusion; agent*,weekly,fri,07:30,Asia/Tokyo,active",
        "bo@example.org,,robot*,daily,mon,06:45,Europe/Berlin,active",
    ]
    as_json = json.loads(digest("export", "--format", "json", cwd=workspace).stdout)
    assert [r["email"] for r in as_json] == ["ada@example.org", "bo@example.org"]
    assert digest("subscribers", "--json", cwd=workspace).stdout.count("@example.org") == 2
