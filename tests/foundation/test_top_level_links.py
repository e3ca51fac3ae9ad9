"""The layout a newcomer expects at the top of the repository: ``templates`` and ``config.example.toml`` are
links into the package (one copy of each, the one the installed package ships)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "target"),
    [("templates", "digest/templates"), ("config.example.toml", "digest/config.example.toml")],
)
def test_top_level_names_are_relative_links_into_the_package(name: str, target: str) -> None:
    link = ROOT / name
    assert link.is_symlink()
    assert os.readlink(link) == target  # relative: it works in any clone
    assert link.resolve() == (ROOT / target).resolve() and link.exists()


def test_the_templates_link_shows_the_templates_the_app_renders() -> None:
    assert (ROOT / "templates" / "web" / "index.html").read_bytes() == (
        ROOT / "digest" / "templates" / "web" / "index.html"
    ).read_bytes()
    assert sorted(p.name for p in (ROOT / "templates").iterdir()) == ["admin", "email", "web"]
