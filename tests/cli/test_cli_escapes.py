"""Nothing a stranger typed or a scraped page carried reaches the operator's terminal as a control sequence.

OSC 52 writes the clipboard, OSC 8 plants a link, ESC[2J clears the screen: the CLI shows them as escapes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from cli_helpers import HF_DAY, digest, point_at

from digest.cleaning import visible
from digest.demo.snapshot_server import SnapshotServer
from digest.models import Paper, SubscriberStatus
from digest.store import db
from digest.store.papers import upsert_papers
from digest.store.subscribers import add_subscriber

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
CLEAR = "\x1b[2J"
HOSTILE = f"{OSC52}{OSC8}{CLEAR}\u202e\x9b"
DAY = date(2026, 8, 21)


def _no_raw_controls(text: str) -> None:
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in text, f"{raw!r} reached the terminal"


def _engine(workspace: Path) -> db.Engine:
    return db.open_database(f"sqlite:///{workspace / 'data' / 'digest.db'}")


def test_subscribers_shows_the_escapes_in_rules_and_names_typed_by_strangers(workspace: Path) -> None:
    # Stored as a form or an import stored them before cleaning existed (or as a store bug might).
    engine = _engine(workspace)
    now = datetime(2026, 8, 21, tzinfo=UTC)
    add_subscriber(
        engine, "eve@example.org", [f"diffusion {HOSTILE}"], now=now, status=SubscriberStatus.ACTIVE
    )
    engine.dispose()
    result = digest("subscribers", cwd=workspace)
    assert result.returncode == 0, result.stderr
    _no_raw_controls(result.stdout)
    assert "\\x1b" in result.stdout  # the operator sees that something was there
    as_json = digest("subscribers", "--json", cwd=workspace)
    _no_raw_controls(as_json.stdout)
    assert json.loads(as_json.stdout)[0]["rules"] == [f"diffusion {HOSTILE}"]  # JSON keeps the exact text


def test_match_shows_the_escapes_in_stored_titles(workspace: Path) -> None:
    engine = _engine(workspace)
    paper = Paper(id="2608.00001", title=f"Diffusion {HOSTILE}", summary="diffusion", daily_date=DAY)
    upsert_papers(engine, [paper], datetime(2026, 8, 21, tzinfo=UTC))
    engine.dispose()
    for extra in ((), ("--json",)):
        result = digest("match", "diffusion", "--date", DAY.isoformat(), *extra, cwd=workspace)
        assert result.returncode == 0, result.stderr
        _no_raw_controls(result.stdout)
    shown = digest("match", "diffusion", "--date", DAY.isoformat(), cwd=workspace).stdout
    assert visible(f"Diffusion {HOSTILE}") in shown


def test_match_and_fetch_never_print_the_escapes_of_a_poisoned_source(
    workspace: Path, tmp_path: Path
) -> None:
    items = json.loads(HF_DAY.read_text(encoding="utf-8"))
    items[0]["paper"]["title"] = items[0]["title"] = f"Agents {HOSTILE}"
    items[0]["paper"]["authors"][0]["name"] = HOSTILE
    poisoned = tmp_path / "poisoned.json"
    poisoned.write_text(json.dumps(items), encoding="utf-8")
    from_file = digest("match", "agents", "--papers", str(poisoned), cwd=workspace)
    assert from_file.returncode == 0, from_file.stderr
    _no_raw_controls(from_file.stdout)
    with SnapshotServer() as hf:
        hf.add_day(DAY, items)
        point_at(workspace, hf.base_url)
        for extra in ((), ("--json",)):
            result = digest("fetch", "--date", DAY.isoformat(), *extra, cwd=workspace)
            assert result.returncode == 0, result.stderr
            _no_raw_controls(result.stdout)
            _no_raw_controls(result.stderr)


def test_an_error_quoting_outside_text_is_shown_with_escapes(workspace: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(f"[{HOSTILE}", encoding="utf-8")
    result = digest("match", "x", "--papers", str(bad), cwd=workspace)
    assert result.returncode == 1
    _no_raw_controls(result.stderr)
