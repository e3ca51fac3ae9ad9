"""like: rules at the command line: `digest match` shows the similarities (real model, real subprocesses);
without the semantic extra, saving a like: rule is refused with one line that names the extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import digest, point_at
from semantic_helpers import without_extra

from digest import cli
from digest.demo.snapshot_server import SnapshotServer

__all__ = ["without_extra"]

DAY = "2026-07-27"
LIKED = "2607.22091"  # Spectral Prior for Reducing Exposure Bias in Diffusion Models


def turn_semantic_on(workspace: Path, threshold: str = "0.55") -> None:
    path = workspace / "config.toml"
    text = path.read_text()
    assert "enabled = false\n# How close" in text, "the example config has a [semantic] section"
    text = text.replace("enabled = false\n# How close", "enabled = true\n# How close")
    path.write_text(text.replace("threshold = 0.55", f"threshold = {threshold}"))


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], workspace: Path, *args: str
) -> tuple[int, str]:
    monkeypatch.chdir(workspace)
    monkeypatch.setattr(sys, "argv", ["digest", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    return int(done.value.code or 0), capsys.readouterr().err


def test_match_shows_the_similarity_of_each_paper_to_the_liked_one(
    workspace: Path, hf: SnapshotServer
) -> None:
    point_at(workspace, hf.base_url)
    turn_semantic_on(workspace, threshold="0.3")
    fetched = digest("fetch", "--date", DAY, cwd=workspace, timeout=300)
    assert fetched.returncode == 0, fetched.stderr
    shown = digest("match", f"like:{LIKED} -exposure", "--date", DAY, "--json", cwd=workspace, timeout=300)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert LIKED not in [r["id"] for r in result], "-exposure excludes the liked paper itself"
    assert result, "papers at cosine >= 0.3 from a diffusion paper"
    for row in result:
        (why,) = row["why"]
        assert why.startswith(
            "similar to «Spectral Prior for Reducing Exposure Bias in Diffusion Models» (0."
        )
    plain = digest("match", f"like:{LIKED}", "--date", DAY, cwd=workspace, timeout=300)
    assert "matched: similar to «Spectral Prior" in plain.stdout and "(1.00)" in plain.stdout


def test_check_config_refuses_a_like_rule_without_the_extra(
    workspace: Path, without_extra: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(
        workspace,
        "http://127.0.0.1:9",
        extra='\n[[subscribers]]\nemail = "ada@example.org"\nrules = ["diffusion", "like:2510.12345"]\n',
    )
    code, stderr = run_in_process(monkeypatch, capsys, workspace, "check-config")
    assert code == 1
    first = stderr.splitlines()[0]
    assert "subscribers.0.rules.1: like: rules need the optional 'semantic' extra" in first
    assert "pip install 'paper-digest[semantic]'" in first


def test_subscribe_refuses_a_like_rule_without_the_extra_and_stores_nothing(
    workspace: Path, without_extra: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = run_in_process(
        monkeypatch,
        capsys,
        workspace,
        "subscribe",
        "ada@example.org",
        "--rule",
        "like:2510.12345",
        "--confirmed",
    )
    assert code == 1
    assert stderr.startswith("error: like: rules need the optional 'semantic' extra")
    assert "pip install 'paper-digest[semantic]'" in stderr.splitlines()[0]
    code, _ = run_in_process(monkeypatch, capsys, workspace, "subscribers", "--json")
    assert code == 0


def test_a_config_that_enables_semantic_without_the_extra_is_refused(
    workspace: Path, without_extra: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    turn_semantic_on(workspace)
    code, stderr = run_in_process(monkeypatch, capsys, workspace, "check-config")
    assert code == 1
    assert "semantic.enabled: like: rules need the optional 'semantic' extra" in stderr.splitlines()[0]
