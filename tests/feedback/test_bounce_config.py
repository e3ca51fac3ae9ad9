"""[bounces]: bad values are one-line errors; secrets come only from the environment (or NAME_FILE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config_load import parse_config
from digest.errors import ConfigError


def load(tmp_path: Path, **bounces: object) -> object:
    return parse_config({"bounces": bounces}, tmp_path / "config.toml")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"address": "bounces+x@lists.example.org"}, "bounces.address: expected a plain address"),
        ({"address": "not an address"}, "bounces.address: expected a plain address"),
        ({"lmtp_listen": "8024"}, "bounces.lmtp_listen: expected host:port"),
        ({"soft_threshold": 0}, "bounces.soft_threshold"),
        ({"hard_threshold": 0}, "bounces.hard_threshold"),
        ({"imap_url": "imaps://u:p@h"}, "bounces.imap_url: unknown key"),
    ],
)
def test_bad_bounce_settings_are_one_line_errors(
    tmp_path: Path, values: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, **values)
    assert problem in str(err.value)


def test_the_webhook_secret_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({"bounces": {"webhook_secret_env": "HOOK"}}, tmp_path / "config.toml")
    monkeypatch.delenv("HOOK", raising=False)
    with pytest.raises(ConfigError, match=r"set \$HOOK or \$HOOK_FILE"):
        config.bounce_webhook_secret()
    monkeypatch.setenv("HOOK", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        config.bounce_webhook_secret()
    monkeypatch.delenv("HOOK")
    (tmp_path / "hook").write_text("a-long-enough-webhook-secret\n")
    monkeypatch.setenv("HOOK_FILE", str(tmp_path / "hook"))
    assert config.bounce_webhook_secret() == "a-long-enough-webhook-secret"


def test_nothing_is_on_until_configured(tmp_path: Path) -> None:
    config = parse_config({}, tmp_path / "config.toml")
    assert config.bounces.address is None and config.bounces.lmtp_address is None
    assert config.bounce_imap_url() is None and config.bounce_webhook_secret() is None
