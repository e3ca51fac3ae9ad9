"""A mistyped command or option gets one line of usage error and exit 2, never a traceback (the real CLI,
in a subprocess: the pinned Typer raises its own vendored click exceptions, which must be caught)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The console script pip installed (what an operator types), next to the interpreter of this venv.
DIGEST = Path(sys.executable).with_name("digest")


def digest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    return subprocess.run(
        [str(DIGEST), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "problem", "hint"),
    [
        (["sned"], "No such command 'sned'.", "Try 'digest --help'."),
        (["run", "--bogus"], "No such option: --bogus", "Try 'digest run --help'."),
        (["subscribe"], "Missing argument 'email'.", "Try 'digest subscribe --help'."),
    ],
)
def test_a_typo_prints_one_line_of_usage_and_exits_2(
    tmp_path: Path, args: list[str], problem: str, hint: str
) -> None:
    result = digest(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and problem in lines[0] and lines[0].endswith(hint)
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_digest_alone_shows_the_help_without_a_traceback(tmp_path: Path) -> None:
    result = digest(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Usage: digest [OPTIONS] COMMAND")
    assert "Traceback" not in result.stderr and "subscribe" in result.stderr


def test_a_bad_option_value_is_a_usage_error_too(tmp_path: Path) -> None:
    result = digest("run", "--date", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: Option '--date' requires an argument."]
