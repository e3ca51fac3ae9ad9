"""`digest admin-password`: the console password hash, read from stdin (never argv)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.web.admin.auth import verify_password


def run(*args: str, stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_it_prints_an_argon2_hash_of_the_password_on_stdin(tmp_path: Path) -> None:
    done = run("admin-password", stdin="a long enough console password\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.startswith("$argon2id$")
    assert verify_password(printed, "a long enough console password")
    assert not verify_password(printed, "another password entirely")


def test_a_short_password_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run("admin-password", stdin="short\n", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == "error: the password is shorter than 12 characters; nothing printed"


def test_the_password_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    done = run("admin-password", "a long enough console password", stdin="", cwd=tmp_path)
    assert done.returncode != 0
    assert "$argon2" not in done.stdout


def test_check_config_wants_the_console_hash_once_admin_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("init", stdin="", cwd=tmp_path).returncode == 0
    config = tmp_path / "config.toml"
    config.write_text(config.read_text() + '\n[admin]\nusername = "ops"\n')
    missing = run("check-config", stdin="", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "error: config.toml: admin.password_hash_env: set $DIGEST_ADMIN_PASSWORD_HASH or "
        "$DIGEST_ADMIN_PASSWORD_HASH_FILE (secrets never sit in the file)"
    )
    hashed = run("admin-password", stdin="a long enough console password\n", cwd=tmp_path).stdout.strip()
    monkeypatch.setenv("DIGEST_ADMIN_PASSWORD_HASH", hashed)
    ok = run("check-config", stdin="", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "/admin for 'ops'" in ok.stdout and hashed not in ok.stdout
