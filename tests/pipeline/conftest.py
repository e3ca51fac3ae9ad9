from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.demo.snapshot_server import SnapshotServer


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    """The captured Hugging Face days, served on loopback."""
    with SnapshotServer(hf_fixtures) as server:
        yield server
