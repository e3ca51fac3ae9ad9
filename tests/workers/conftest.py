"""Fixtures for the scale-out tests: the HF snapshot on loopback; the operate and pipeline helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The config writers and `serve` process helpers are shared with the operate and pipeline tests.
for folder in ("pipeline", "operate"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / folder))

from digest.demo.snapshot_server import SnapshotServer  # noqa: E402


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    """The captured Hugging Face days, served on loopback (add re-dated days with operate_helpers.serve_day)."""
    with SnapshotServer(hf_fixtures) as server:
        yield server
