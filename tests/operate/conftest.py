"""Fixtures for the operate tests: the captured HF day re-dated to any day, on a loopback snapshot server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pipeline_helpers (config, subscribers, mail reading) is shared with the pipeline tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from digest.demo.snapshot_server import SnapshotServer


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    """The captured Hugging Face days, served on loopback (add re-dated days with operate_helpers.serve_day)."""
    with SnapshotServer(hf_fixtures) as server:
        yield server
