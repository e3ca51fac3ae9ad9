"""Fixtures for the command-line tests: a `digest init` workspace, the captured HF days on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import digest, point_at
from dkim_keys import dkim_key  # the module-wide RSA key pair, for the signing tests
from smtp_server import FaultySmtpServer

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


@pytest.fixture
def mailing(workspace: Path, hf: SnapshotServer, smtp_server: Any) -> FaultySmtpServer:
    """The workspace fetches the captured HF days and mails through a loopback SMTP server; that server."""
    server: FaultySmtpServer = smtp_server()
    point_at(workspace, hf.base_url, server)
    return server
