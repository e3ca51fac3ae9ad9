"""`digest demo` (what scripts/demo runs) end to end: real HTTP, SQL and SMTP, one .eml per demo subscriber."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from cli_helpers import digest

from digest.demo.run import DEMO_SUBSCRIBERS


def test_the_demo_delivers_one_digest_per_subscriber_and_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = digest("demo", "--out", str(out), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "17 papers fetched" in result.stdout
    emls = sorted(out.glob("*.eml"))
    assert len(emls) == len(DEMO_SUBSCRIBERS) == 3
    for (address, _name, _rules), eml in zip(sorted(DEMO_SUBSCRIBERS), emls, strict=True):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert msg["To"] == address
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = eml.with_suffix(".html").read_text()
        assert "huggingface.co/papers/" in html and "Unsubscribe" in html
    assert not (tmp_path / "data").exists(), "the demo works in a temporary workspace"
