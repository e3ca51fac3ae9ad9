"""`digest admin-password`: the console password hash, read from stdin (never argv)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import digest

from digest.web.admin.auth import verify_password


def test_it_prints_an_argon2_hash_of_the_password_on_stdin(tmp_path: Path) -> None:
    done = digest("admin-password", stdin="a long enough console password\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.startswith("$argon2id$")
    assert verify_password(printed, "a long enough console password")
    assert not verify_password(printed, "another password entirely")


def test_a_short_password_is_refused_in_one_line(tmp_path: Path) -> None:
    done = digest("admin-password", stdin="short\n", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == "error: the password is shorter than 12 characters; nothing printed"


def test_the_password_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    done = digest("admin-password", "a long enough console password", stdin="", cwd=tmp_path)
    assert done.returncode != 0
    assert "$argon2" not in done.stdout


def test_check_config_wants_the_console_hash_once_admin_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert digest("init", stdin="", cwd=tmp_path).returncode == 0
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + '\n[admin]\nusername = "ops"\n')
    missing = digest("check-config", stdin="", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "error: config.toml: admin.password_hash_env: set $DIGEST_ADMIN_PASSWORD_HASH or "
        "$DIGEST_ADMIN_PASSWORD_HASH_FILE (secrets never sit in the file)"
    )
    hashed = digest("admin-password", stdin="a long enough console password\n", cwd=tmp_path).stdout.strip()
    monkeypatch.setenv("DIGEST_ADMIN_PASSWORD_HASH", hashed)
    ok = digest("check-config", stdin="", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "/admin for 'ops'" in ok.stdout and hashed not in ok.stdout
