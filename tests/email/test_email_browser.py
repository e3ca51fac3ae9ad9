"""The HTML part in headless Chromium: fits a phone and a desktop, follows dark mode, hides the preheader.

Screenshots are kept in test-artifacts/email/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from email_helpers import context, load_day, match

from digest.models import Explanation, MatchedPaper, Paper, Rule, Span
from digest.render import render_digest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "email"


def digests() -> dict[str, str]:
    agents, diffusion = Rule("agent*", name="agents"), Rule("diffusion")
    papers = match(load_day("2026-08-21"), [(agents, ("agent",)), (diffusion, ("diffusion",))])
    normal = render_digest(context(papers, [agents, diffusion], run_date=date(2026, 8, 21)))
    long_word = "Supercalifragilistic" * 40
    hostile = Paper(
        id="2608.66666",
        title=f'<script>alert(1)</script> {long_word} "><img src=x onerror=alert(1)> Agent',
        summary="مرحبا بالعالم \u202egnp.exe " + "https://example.org/" + "x" * 600 + " 🧪 " + "word " * 200,
        daily_date=date(2026, 8, 21),
        authors=("A" * 300, "עברית", "Ünïcødé"),
        organization="O" * 200,
        upvotes=7,
        github_repo="javascript:alert(1)",
    )
    bad = MatchedPaper(hostile, (Explanation("agents", ("agent",), ("title",), (Span("title", 0, 8),)),))
    ctx = context([bad, *papers[:2]], [agents], run_date=date(2026, 8, 21))
    hostile_html = render_digest(replace(ctx, postal_address="P" * 400)).html
    return {"digest": normal.html, "hostile": hostile_html}


@pytest.mark.parametrize("name", ["digest", "hostile"])
def test_the_html_fits_a_phone_and_a_desktop_without_horizontal_scroll(browser: object, name: str) -> None:
    html = digests()[name]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (375, 1024):
        for scheme in ("light", "dark"):
            page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)  # type: ignore[attr-defined]
            try:
                page.route("**/*", lambda route: route.abort())  # a mail never loads anything remote
                page.set_content(html, wait_until="load")
                scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert scroll <= inner, f"{name} at {width}px ({scheme}) scrolls sideways: {scroll} > {inner}"
                container = page.locator(".container").first
                box = container.bounding_box()
                assert box is not None and box["width"] <= min(width, 642)
                assert page.locator("script, img, iframe").count() == 0
                preheader = page.locator("body > div").first
                assert not preheader.is_visible()
                background = container.evaluate("e => getComputedStyle(e).backgroundColor")
                if scheme == "dark":
                    assert background == "rgb(20, 26, 37)"
                else:
                    assert background == "rgb(255, 255, 255)"
                page.screenshot(path=str(ARTIFACTS / f"{name}-{width}-{scheme}.png"), full_page=True)
            finally:
                page.close()
