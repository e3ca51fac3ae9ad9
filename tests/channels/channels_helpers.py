"""Building blocks for the channel, archive and feed tests."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.config_load import parse_config

DAY = date(2026, 8, 21)  # api_daily_papers_date-2026-08-21.json: 17 papers
NOW = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)
SECRET = secrets.token_urlsafe(48)
HOOK_ENV = "DIGEST_TEST_HOOK_URL"


def make_config(
    tmp_path: Path,
    *,
    hf_url: str = "http://127.0.0.1:9",
    smtp_port: int = 25,
    db_url: str | None = None,
    channels: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> Config:
    """A config against loopback servers (HF snapshot, SMTP); ``channels`` as [[channels]] entries."""
    key = tmp_path / "secret_key"
    key.write_text(SECRET)
    data: dict[str, Any] = {
        "source": {"base_url": hf_url, "lookback_days": 1, "deadline_s": 20},
        "database": {"url": db_url or f"sqlite:///{tmp_path / 'digest.db'}"},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "pool_size": 2,
            "timeout_s": 5,
            "from": "Paper Digest <digest@example.org>",
        },
        "web": {"base_url": "https://digest.example.org"},
        "security": {"secret_key_env": "DIGEST_TEST_UNSET_KEY", "secret_key_file": str(key)},
        "digest": {"admin_email": "ops@example.org", "list_id": "test.example.org"},
        "channels": channels or [],
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, tmp_path / "config.toml")


def channel(name: str = "lab", *rules: str, fmt: str = "slack", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "rules": list(rules) or ["agent*"],
        "webhook_url_env": HOOK_ENV,
        "format": fmt,
        **extra,
    }
