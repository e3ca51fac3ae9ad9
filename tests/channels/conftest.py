from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook_server import WebhookServer

from digest.demo.snapshot_server import SnapshotServer


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    """A webhook receiver on loopback that records posts and answers from a script."""
    server = WebhookServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    """The captured Hugging Face days, served on loopback."""
    with SnapshotServer(hf_fixtures) as server:
        yield server
