"""Building blocks for the channel, archive and feed tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_helpers import DAY, NOW, SECRET, config_data

from digest.config import Config
from digest.config_load import parse_config

__all__ = ["DAY", "HOOK_ENV", "NOW", "SECRET", "channel", "make_config"]

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
    """The pipeline tests' config (loopback HF snapshot and SMTP), with ``channels`` as [[channels]]."""
    data = config_data(tmp_path, hf_url=hf_url, smtp_port=smtp_port, db_url=db_url)
    data["channels"] = channels or []
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
