"""The fallback source: the Daily Papers HTML page and the JSON its Svelte component is hydrated from.

The page carries the same items as the API inside
``<div class="SVELTE_HYDRATER" data-target="DailyPapers" data-props="{...}">``. The 2024 props have
``date`` (an ISO timestamp) and ``dailyPapers``; newer pages have ``dateString`` ("2026-08-21") too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from bs4 import BeautifulSoup

from digest.errors import SourceError

SELECTOR = 'div.SVELTE_HYDRATER[data-target="DailyPapers"]'


@dataclass(frozen=True, slots=True)
class Listing:
    """What the listing page says: its raw items and the day it shows (when it says)."""

    items: list[object]
    day: date | None


def parse_listing(html: str, *, url: str) -> Listing:
    """Extract the embedded Daily Papers data from a listing page; ``SourceError`` when it is not there."""
    soup = BeautifulSoup(html, "html.parser")
    node = soup.select_one(SELECTOR)
    if node is None:
        raise SourceError(url, f"no {SELECTOR} element in the page (the site changed?)")
    raw = node.get("data-props")
    if not isinstance(raw, str) or not raw.strip():
        raise SourceError(url, "the DailyPapers element has no data-props (the site changed?)")
    try:
        props = json.loads(raw)
    except ValueError as exc:
        raise SourceError(url, f"the DailyPapers data-props is not JSON ({exc})") from None
    if not isinstance(props, dict):
        raise SourceError(url, "the DailyPapers data-props is not a JSON object (the site changed?)")
    items = props.get("dailyPapers")
    if not isinstance(items, list):
        raise SourceError(url, "the DailyPapers data-props has no dailyPapers list (the site changed?)")
    return Listing(items=items, day=_props_day(props))


def _props_day(props: dict[str, object]) -> date | None:
    for key in ("dateString", "date"):
        value = props.get(key)
        if isinstance(value, str) and len(value) >= 10:
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                continue
    return None
