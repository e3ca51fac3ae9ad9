from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pipeline_helpers (the config of a run against loopback servers) is shared with the pipeline tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

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
