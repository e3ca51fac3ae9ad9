"""The digest mail for every reader: axe-core finds nothing serious in light or dark, on a phone or a desktop;
the mail is one article named by its subject; each paper's links are told apart by name in a screen reader's
list of links; the upvote triangle is not read out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from axe_check import assert_accessible, contrast
from email_helpers import context, load_day, match

from digest.models import Explanation, MatchedPaper, Paper, RenderedEmail, Rule, Span
from digest.render import render_digest

pytestmark = pytest.mark.browser

DAY = date(2026, 8, 21)


def _digest() -> RenderedEmail:
    agents, diffusion = Rule("agent*", name="agents"), Rule("diffusion")
    papers = match(load_day("2026-08-21"), [(agents, ("agent",)), (diffusion, ("diffusion",))])
    return render_digest(context(papers, [agents, diffusion], run_date=DAY))


def _open(browser: Any, html: str, *, width: int = 1024, scheme: str = "light") -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.route("**/*", lambda route: route.abort())  # a mail never loads anything remote
    page.set_content(html, wait_until="load")
    return page


def _empty_digest() -> RenderedEmail:
    return render_digest(context([], [Rule("diffusion")], run_date=DAY))


def _long_titles_digest() -> RenderedEmail:
    """Titles with and without a short name before a colon, and every kind of link."""
    base = Paper(
        id="2608.00001",
        title="A Very Long Title Without Any Colon That Goes On and On About Agents in Many Worlds",
        summary="Agents.",
        daily_date=DAY,
        upvotes=5,
        github_repo="https://github.com/example/one",
        project_page="https://example.org/one",
    )
    other = replace(
        base,
        id="2608.00002",
        title="AgentX: Agents That Plan",
        upvotes=4,
        github_repo="https://github.com/example/two",
        project_page="https://example.org/two",
    )
    why = (Explanation("agents", ("agent",), ("abstract",), (Span("summary", 0, 6),)),)
    papers = [MatchedPaper(base, why), MatchedPaper(other, why)]
    return render_digest(context(papers, [Rule("agent*", name="agents")], run_date=DAY))


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 1280])
def test_axe_finds_nothing_serious_in_the_digest_in_light_and_dark(
    browser: Any, width: int, scheme: str
) -> None:
    for name, mail in (("digest", _digest()), ("empty", _empty_digest()), ("long", _long_titles_digest())):
        page = _open(browser, mail.html, width=width, scheme=scheme)
        try:
            assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") is (scheme == "dark")
            assert_accessible(page, f"{name} digest at {width}px, {scheme}")
        finally:
            page.close()


def test_the_postal_address_reads_at_4_5_to_1_in_light_and_dark(browser: Any) -> None:
    html = _digest().html
    for scheme, background in (("light", "rgb(255, 255, 255)"), ("dark", "rgb(20, 26, 37)")):
        page = _open(browser, html, scheme=scheme)
        try:
            address = page.locator(".addr")
            assert address.inner_text().startswith("Paper Digest")
            colour = address.evaluate("e => getComputedStyle(e).color")
            assert (
                page.locator(".container").evaluate("e => getComputedStyle(e).backgroundColor") == background
            )
            assert contrast(colour, background) >= 4.5, f"{scheme}: {colour} on {background}"
        finally:
            page.close()


def test_the_mail_is_one_article_named_by_its_subject_and_no_main(browser: Any) -> None:
    from playwright.sync_api import expect

    mail = _digest()
    page = _open(browser, mail.html)
    try:
        expect(page.get_by_role("article")).to_have_count(1)
        expect(page.get_by_role("article")).to_have_accessible_name(mail.subject)
        expect(page.get_by_role("main")).to_have_count(0)
        # The hidden preheader stays outside the article, and every paper inside it.
        assert page.locator("[role=article] .paper").count() == page.locator(".paper").count() > 0
    finally:
        page.close()


def test_each_papers_links_carry_its_short_title_in_their_accessible_name(browser: Any) -> None:
    from playwright.sync_api import expect

    for mail in (_digest(), _long_titles_digest()):
        page = _open(browser, mail.html)
        try:
            links = page.locator(".links a")
            names = [links.nth(i).evaluate("e => e.getAttribute('aria-label')") for i in range(links.count())]
            shown = links.all_inner_texts()
            assert len(names) > 4
            # A list of links tells them apart, and each name starts with what the link shows (speech input).
            assert len(set(names)) == len(names), names
            for name, text in zip(names, shown, strict=True):
                assert text in ("arXiv", "PDF", "Code", "Project page") and name.startswith(f"{text}: ")
            for i in range(links.count()):
                expect(links.nth(i)).to_have_accessible_name(names[i])
        finally:
            page.close()
    page = _open(browser, _long_titles_digest().html)
    try:
        # The part before the colon is the short title; a title without one is cut at a word.
        expect(page.get_by_role("link", name="Code: AgentX", exact=True)).to_have_count(1)
        long_code = page.get_by_role("link", name="Code: A Very Long Title", exact=False)
        expect(long_code).to_have_count(1)
        name = long_code.get_attribute("aria-label") or ""
        assert name.endswith("…") and len(name) <= len("Code: ") + 60
    finally:
        page.close()


def test_the_upvote_triangle_is_not_read_out(browser: Any) -> None:
    page = _open(browser, _digest().html)
    try:
        stats = page.locator(".stats").first
        assert "▲" in stats.inner_text()  # still shown
        tree = stats.aria_snapshot()
        assert "▲" not in tree and "163 upvotes" in tree, tree
    finally:
        page.close()
