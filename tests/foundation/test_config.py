"""Config loading: every error is one line naming the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config_load import EXAMPLE_CONFIG, load_config, parse_config
from digest.errors import ConfigError

GOOD_KEY = "k" * 48


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_the_commented_example_is_a_valid_config_with_every_default() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    assert cfg.source.base_url == "https://huggingface.co"
    assert cfg.source.lookback_days == 3
    assert cfg.schedule.cron == "0 7 * * *"
    assert cfg.smtp.security == "starttls"
    assert cfg.smtp.from_ == "Paper Digest <digest@example.org>"
    assert cfg.digest.max_papers == 30
    assert cfg.subscribers == []


def test_every_key_of_the_example_is_commented() -> None:
    lines = EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            assert lines[i - 1].startswith("#"), f"key without a comment above it: {line!r}"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.database.url == "sqlite:///data/digest.db"
    assert cfg.database_url == f"sqlite:///{(tmp_path / 'data/digest.db').absolute()}"


def test_a_wrong_type_names_file_key_and_value(tmp_path: Path) -> None:
    assert problems(tmp_path, '[smtp]\nport = "abc"\n') == [
        f"{tmp_path / 'config.toml'}: smtp.port: expected an integer, got 'abc'"
    ]


def test_an_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[smtp]\nhots = 'x'\n")
    assert line.endswith("smtp.hots: unknown key (did you mean 'host'?)")


def test_an_unknown_section_is_an_error(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[smpt]\nhost = 'x'\n")
    assert "smpt: unknown key (did you mean 'smtp'?)" in line


def test_a_bad_choice_lists_the_choices(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[smtp]\nsecurity = 'ssl'\n")
    assert "smtp.security: expected one of 'starttls', 'tls' or 'none', got 'ssl'" in line


def test_plain_smtp_is_refused_for_a_remote_host(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[smtp]\nhost = 'mail.example.org'\nsecurity = 'none'\n")
    assert "smtp: security = 'none'" in line and "loopback" in line


def test_plain_smtp_is_allowed_to_loopback(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[smtp]\nhost = '127.0.0.1'\nsecurity = 'none'\n"))
    assert cfg.smtp.security == "none"


def test_several_problems_are_all_reported_one_per_line(tmp_path: Path) -> None:
    lines = problems(tmp_path, "[source]\nlookback_days = -1\n[web]\nport = 'x'\n")
    assert len(lines) == 2
    assert any("source.lookback_days: input should be greater than or equal to 0, got -1" in x for x in lines)
    assert any("web.port: expected an integer, got 'x'" in x for x in lines)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[smtp\n")
    assert line.startswith(f"{tmp_path / 'config.toml'}: invalid TOML")


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run 'digest init'"):
        load_config(tmp_path / "nope.toml")


def test_an_unknown_time_zone_is_named(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[schedule]\ntimezone = 'Mars/Olympus'\n")
    assert "schedule.timezone: unknown time zone 'Mars/Olympus'" in line


def test_a_bad_cron_is_explained(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[schedule]\ncron = '0 7 *'\n")
    assert "schedule.cron: expected 5 cron fields" in line


def test_a_config_subscriber_needs_rules(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[[subscribers]]\nemail = 'a@example.org'\nrules = []\n")
    assert "subscribers.0.rules: must not be empty" in line


def test_a_header_value_cannot_carry_a_newline(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, '[digest]\nlist_id = "a\\nBcc: x@evil.example"\n')
    assert "digest.list_id: must be one line" in line


def test_incomplete_dkim_settings_are_refused(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[digest]\ndkim_selector = 's1'\n")
    assert "DKIM needs all three" in line


def test_the_secret_key_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", GOOD_KEY)
    assert parse_config({}, tmp_path / "c.toml").secret_key() == GOOD_KEY


def test_the_secret_key_can_come_from_a_file_named_by_NAME_FILE(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_SECRET_KEY", raising=False)
    (tmp_path / "key").write_text(GOOD_KEY + "\n")
    monkeypatch.setenv("DIGEST_SECRET_KEY_FILE", str(tmp_path / "key"))
    assert parse_config({}, tmp_path / "c.toml").secret_key() == GOOD_KEY


def test_a_placeholder_secret_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", "change-me")
    with pytest.raises(ConfigError, match="placeholder"):
        parse_config({}, tmp_path / "c.toml").secret_key()


def test_a_missing_secret_key_says_how_to_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_SECRET_KEY", raising=False)
    monkeypatch.delenv("DIGEST_SECRET_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match=r"set \$DIGEST_SECRET_KEY"):
        parse_config({}, tmp_path / "c.toml").secret_key()


def test_the_smtp_password_is_required_only_with_a_username(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD_FILE", raising=False)
    assert parse_config({}, tmp_path / "c.toml").smtp_password() is None
    cfg = parse_config({"smtp": {"username": "u"}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"smtp.password_env: set \$DIGEST_SMTP_PASSWORD"):
        cfg.smtp_password()
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    assert cfg.smtp_password() == "pw"


def test_the_config_is_frozen(tmp_path: Path) -> None:
    cfg = parse_config({}, tmp_path / "c.toml")
    with pytest.raises(Exception, match="frozen"):
        cfg.smtp.port = 1  # type: ignore[misc]


def test_a_bare_unsubscribe_address_becomes_a_mailto_url(tmp_path: Path) -> None:
    cfg = parse_config({"digest": {"unsubscribe_mailto": "unsubscribe@example.org"}}, tmp_path / "c.toml")
    assert cfg.digest.unsubscribe_mailto == "mailto:unsubscribe@example.org"


def test_a_list_id_must_be_a_domain(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[digest]\nlist_id = 'my list'\n")
    assert "digest.list_id: expected a domain you control" in line


def test_an_impossible_cron_is_refused(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[schedule]\ncron = '0 25 * * *'\n")
    assert "schedule.cron: invalid cron expression '0 25 * * *'" in line


def test_a_database_password_is_never_echoed(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[database]\nurl = 'mysql://digest:S3cretPw@db/digest'\n")
    assert "S3cretPw" not in line and "database.url" in line


def test_a_heroku_style_postgres_url_is_accepted(tmp_path: Path) -> None:
    cfg = parse_config({"database": {"url": "postgres://u@db/digest"}}, tmp_path / "c.toml")
    assert cfg.database.url == "postgresql+psycopg://u@db/digest"


def test_the_web_address_must_be_a_site_root(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[web]\nbase_url = 'https://example.org/digest'\n")
    assert "web.base_url: expected the site's root" in line


@pytest.mark.parametrize(
    ("cron", "weekdays"),
    [
        ("0 7 * * 1", "mon"),
        ("0 7 * * 0", "sun"),
        ("0 7 * * 7", "sun"),
        ("0 7 * * 1-5", "mon,tue,wed,thu,fri"),
        ("0 7 * * */2", "sun,tue,thu,sat"),
    ],
)
def test_cron_weekdays_count_from_sunday_as_in_crontab(cron: str, weekdays: str) -> None:
    from digest.config import crontab_for_apscheduler

    assert crontab_for_apscheduler(cron).split()[4] == weekdays


def test_a_cron_that_never_fires_is_refused(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[schedule]\ncron = '0 7 31 2 *'\n")
    assert "never fires" in line


def test_an_unsubscribe_mailto_that_cannot_go_in_a_header_is_refused(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[digest]\nunsubscribe_mailto = 'u@example.org?subject=please stop'\n")
    assert "digest.unsubscribe_mailto" in line


def test_a_password_with_slashes_or_at_signs_is_never_echoed(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "[database]\nurl = 'mysql://u:p/w@rd@db/x'\n")
    assert "p/w@rd" not in line and "rd@db" not in line
