"""Building blocks for the command-line tests: `digest` in a real subprocess, a workspace pointed at loopback
servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from smtp_server import FaultySmtpServer

ROOT = Path(__file__).resolve().parents[2]
HF_DAY = ROOT.parent / "shared" / "fixtures" / "hf" / "api_daily_papers_date-2026-08-21.json"


def digest(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m digest ARGS`` in ``cwd``, without the caller's $DIGEST_CONFIG and $DIGEST_SECRET_KEY."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DIGEST_CONFIG", "DIGEST_SECRET_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def point_at(workspace: Path, hf_url: str, smtp: FaultySmtpServer | None = None, extra: str = "") -> None:
    path = workspace / "config.toml"
    text = path.read_text()
    text = text.replace('base_url = "https://huggingface.co"', f'base_url = "{hf_url}"')
    text = text.replace("lookback_days = 3", "lookback_days = 0")
    if smtp is not None:
        text = text.replace('host = "localhost"', 'host = "127.0.0.1"')
        text = text.replace("port = 587", f"port = {smtp.port}")
        text = text.replace('security = "starttls"', 'security = "none"')
    path.write_text(text + extra)


def subscribe_ada(workspace: Path) -> None:
    """ada@example.org, confirmed, for ``agent*`` (the captured day's agent papers)."""
    added = digest("subscribe", "ada@example.org", "--rule", "agent*", "--confirmed", cwd=workspace)
    assert added.returncode == 0, added.stderr
