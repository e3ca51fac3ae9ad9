"""Fixtures for the digest email tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dkim_keys import dkim_key  # the module-wide RSA key pair, for the signing tests

# email_helpers sits beside this file (tests/ is not a package; "email" must not shadow the stdlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from digest.render import clear_caches

__all__ = ["dkim_key"]


@pytest.fixture(autouse=True)
def _fresh_paper_cache() -> Iterator[None]:
    """Each test renders its papers from scratch, so no test passes on a block another test cached."""
    clear_caches()
    yield
    clear_caches()
