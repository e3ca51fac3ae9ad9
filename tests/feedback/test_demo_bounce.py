"""`digest demo` (scripts/demo) shows one bounce processed offline: a DSN over LMTP marks the address bounced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from digest.demo.run import DEMO_SUBSCRIBERS, run_demo


def test_the_demo_bounces_one_digest_back_through_the_lmtp_listener(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "out")

    assert result.bounce is not None
    address = DEMO_SUBSCRIBERS[-1][0]
    assert result.bounce.recipient == address
    assert result.bounce.envelope_sender.startswith("bounces+"), "the digest went out with a VERP sender"
    assert result.bounce.kind == "hard" and "5.1.1" in result.bounce.reason
    assert result.bounce.action == f"{address}: hard bounce 1/1: marked bounced"


def test_the_demo_summary_prints_the_bounce(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "digest", "demo", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "bounce: a DSN for alan@example.org" in done.stdout
    assert "marked bounced" in done.stdout
