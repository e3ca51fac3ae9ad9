"""Fixtures for the command-line tests: a `digest init` workspace, the captured HF days on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import digest
from dkim_keys import dkim_key  # the module-wide RSA key pair, for the signing tests

from digest.demo.snapshot_server import SnapshotServer

__all__ = ["dkim_key"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder where `digest init` wrote config.toml and the SQLite database."""
    result = digest("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    """The captured Hugging Face days, served on loopback."""
    with SnapshotServer(hf_fixtures) as server:
        yield server
