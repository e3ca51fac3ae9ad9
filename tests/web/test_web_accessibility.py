"""Every page for every reader, in headless Chromium against a real server: axe-core finds nothing serious or
critical on any page or state at 375 and 1280 px; the live preview announces one short line and keeps the
list out of the live region; a bad submit says "Error:" in the title and puts the focus on a summary that
links to the field; the focus ring stands out from the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import freezegun
import pytest
from axe_check import assert_accessible, contrast
from test_web_browser import Served, _mail, _shot, links_in_base, served
from web_helpers import SECRET

from digest.config_load import parse_config
from digest.models import Rule, Subscriber
from digest.notices import render_confirmation, render_reminder, render_welcome
from digest.tokens import make_token

__all__ = ["served"]  # the fixture, shared with the end-to-end browser test

pytestmark = pytest.mark.browser

SHORT_STATUS = 120  # characters: one line, said in a breath


def _context(browser: Any, width: int = 1280, scheme: str = "light", js: bool = True) -> Any:
    return browser.new_context(
        viewport={"width": width, "height": 900}, color_scheme=scheme, java_script_enabled=js
    )


def _expired_confirm_link(base: str) -> str:
    with freezegun.freeze_time("2020-01-01"):
        return f"{base}/confirm/{make_token(SECRET, 'confirm', 1)}"


@pytest.mark.parametrize(("width", "scheme"), [(375, "light"), (1280, "light"), (1280, "dark")])
def test_axe_finds_nothing_serious_on_any_page(served: Served, browser: Any, width: int, scheme: str) -> None:
    from playwright.sync_api import expect

    expired = _expired_confirm_link(served.url)
    context = _context(browser, width, scheme)
    page = context.new_page()
    where = f"{width}px {scheme}"
    status = page.locator("#preview-status")

    page.goto(served.url + "/")
    assert_accessible(page, f"subscribe page, {where}")
    rules = page.get_by_label("Rules, one per line")
    rules.fill("diffusion")
    expect(page.locator("#preview .papers li")).to_have_count(2)
    assert_accessible(page, f"preview with matches, {where}")
    rules.fill("zzqqxx")
    expect(status).to_contain_text("No paper of the last 7 days matches")
    assert_accessible(page, f"preview without a match, {where}")
    rules.fill("title:(agent OR")
    expect(page.locator("#preview .problems")).to_be_visible()
    assert_accessible(page, f"preview with a bad rule, {where}")

    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Subscribe").click()
    expect(page).to_have_title(re.compile("^Error: "))
    assert_accessible(page, f"subscribe errors, {where}")
    _shot(page, f"a11y-subscribe-errors-{width}-{scheme}")

    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Rules, one per line").fill("diffusion")
    page.get_by_role("button", name="Preview matches").click()
    expect(page.locator("#preview .papers li")).to_have_count(2)
    assert_accessible(page, f"preview after the button, {where}")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert_accessible(page, f"check your inbox, {where}")

    page.goto(links_in_base(_mail(served.sink, 1), served.url)["confirm"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    assert_accessible(page, f"confirm page, {where}")
    context.clear_cookies()  # the form's CSRF cookie is gone: the button answers "the form had expired"
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page).to_have_title(re.compile("^Error: "))
    expect(page.locator("#error-summary")).to_be_focused()
    assert_accessible(page, f"confirm page, form expired, {where}")
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    assert_accessible(page, f"confirmed, {where}")

    links = links_in_base(_mail(served.sink, 2), served.url)
    page.goto(links["manage"])
    assert_accessible(page, f"manage, {where}")
    page.get_by_label("Rules, one per line").fill("agents\n-video")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_title(re.compile("^Error: "))
    assert_accessible(page, f"manage errors, {where}")
    _shot(page, f"a11y-manage-errors-{width}-{scheme}")
    page.get_by_label("Rules, one per line").fill("agents")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_have_text("Saved.")
    assert_accessible(page, f"manage saved, {where}")

    page.goto(links["u"])
    assert_accessible(page, f"unsubscribe, {where}")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    assert_accessible(page, f"unsubscribed, {where}")

    for path, heading, code in (
        ("/no-such-page", "Page not found", 404),
        ("/u/not-a-token", "This link is not valid", 404),
        (expired, "This link has expired", 410),
    ):
        answer = page.goto(path if path.startswith("http") else served.url + path)
        assert answer is not None and answer.status == code
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        assert_accessible(page, f"{code} {heading}, {where}")
    context.close()


def test_the_live_preview_announces_one_short_line_and_keeps_the_list_outside_it(
    served: Served, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = _context(browser)
    page = context.new_page()
    page.goto(served.url + "/")
    status = page.locator("#preview-status")
    assert status.get_attribute("role") == "status" and status.get_attribute("aria-live") == "polite"
    # Count what the live region is given: the same line twice would be announced twice.
    page.evaluate(
        """() => { window.said = [];
        new MutationObserver(() => window.said.push(document.getElementById('preview-status').textContent))
          .observe(document.getElementById('preview-status'), {childList: true, subtree: true, characterData: true}); }"""
    )
    rules = page.get_by_label("Rules, one per line")
    rules.press_sequentially("diffusion", delay=20)
    expect(page.locator("#preview .papers li")).to_have_count(2)
    expect(status).to_have_text("2 papers of the last 7 days match.")
    # Nothing of the list is inside a live region.
    inside = page.locator("#preview .papers").evaluate(
        "e => e.closest('[aria-live], [role=status], [role=alert], [role=log]') !== null"
    )
    assert inside is False
    assert page.locator("[aria-live] .papers, [role=status] .papers, [role=alert] .papers").count() == 0

    # Typing on with the same result: the list may refresh, the announcement does not repeat.
    said = page.evaluate("window.said.length")
    rules.press("End")
    rules.press_sequentially("  ", delay=20)
    page.wait_for_timeout(900)
    assert page.evaluate("window.said.length") == said

    # The papers' links say that they open a new tab; the triangle is not read, the upvotes are.
    first = page.locator("#preview .papers li").first
    expect(first.get_by_role("link")).to_have_accessible_name(
        "Video Diffusion Models at Scale (opens in a new tab)"
    )
    tree = first.aria_snapshot()
    assert "▲" not in tree and "42 upvotes" in tree, tree

    rules.press_sequentially("\ntitle:(agent OR", delay=10)
    expect(status).to_have_text("Line 2, character 14: OR needs something to look for on both sides")
    expect(rules).to_have_attribute("aria-invalid", "true")
    expect(rules).to_have_accessible_description(re.compile(r"^Line 2, character 14: OR needs"))
    expect(page.locator("#preview .problems pre")).to_contain_text("title:(agent OR")

    rules.fill("diffusion\n\n  agents")
    expect(status).to_have_text("3 papers of the last 7 days match.")
    expect(rules).not_to_have_attribute("aria-invalid", "true")
    expect(rules).to_have_accessible_description(re.compile("^How to write rules"))
    rules.fill("diffusion\n\n  agents AND")
    expect(status).to_have_text("Line 3, character 10: AND needs something to look for on both sides")

    for text in page.evaluate("window.said"):
        assert 0 < len(text.strip()) <= SHORT_STATUS, text
    context.close()


@pytest.mark.parametrize("js", [True, False], ids=["with-js", "without-js"])
def test_a_bad_submit_says_error_in_the_title_and_focuses_a_summary_linking_to_the_field(
    served: Served, browser: Any, js: bool
) -> None:
    from playwright.sync_api import expect

    context = _context(browser, js=js)
    page = context.new_page()
    page.goto(served.url + "/")
    title = page.title()
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Rules, one per line").fill("diffusion\ntitle:(agent OR")
    page.get_by_role("button", name="Subscribe").click()

    expect(page).to_have_title("Error: " + title)
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_have_accessible_name("There is a problem")
    link = summary.get_by_role("link", name="Rules: Line 2, character 14: OR needs something to look for")
    rules = page.get_by_label("Rules, one per line")
    # The error comes first in the box's description, then the help.
    expect(rules).to_have_accessible_description(
        re.compile(r"^Error: Line 2, character 14: OR needs .* How to write rules")
    )
    expect(rules).to_have_attribute("aria-invalid", "true")
    link.click()
    expect(rules).to_be_focused()

    # The same on the manage page, for rules that cannot be saved.
    page.goto(served.url + "/")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Rules, one per line").fill("diffusion")
    page.get_by_role("button", name="Subscribe").click()
    page.goto(links_in_base(_mail(served.sink, 1), served.url)["confirm"])
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    page.goto(links_in_base(_mail(served.sink, 2), served.url)["manage"])
    manage_title = page.title()
    page.get_by_label("Rules, one per line").fill("agents\n-video")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_title("Error: " + manage_title)
    expect(page.locator("#error-summary")).to_be_focused()
    rules = page.get_by_label("Rules, one per line")
    expect(rules).to_have_accessible_description(re.compile(r"^Error: Line 2, character 1: "))
    page.locator("#error-summary").get_by_role("link").first.click()
    expect(rules).to_be_focused()
    context.close()


def test_the_unsubscribed_page_is_titled_as_its_heading(served: Served, browser: Any) -> None:
    from playwright.sync_api import expect

    context = _context(browser, js=False)
    page = context.new_page()
    page.goto(served.url + "/")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Rules, one per line").fill("diffusion")
    page.get_by_role("button", name="Subscribe").click()
    page.goto(links_in_base(_mail(served.sink, 1), served.url)["u"])
    expect(page).to_have_title(re.compile("^Unsubscribe · "))
    page.get_by_role("button", name="Unsubscribe").click()
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == "You are unsubscribed"
    expect(page).to_have_title(re.compile(f"^{heading} · "))
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_focus_ring_stands_out_from_the_page_by_3_to_1(served: Served, browser: Any, scheme: str) -> None:
    context = _context(browser, scheme=scheme)
    page = context.new_page()
    page.goto(served.url + "/")
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")  # the site's name
    page.keyboard.press("Tab")  # the lede's link
    page.keyboard.press("Tab")  # the email field
    focused = page.evaluate(
        """() => { const e = document.activeElement, s = getComputedStyle(e);
        return [e.id, s.outlineStyle, s.outlineWidth, s.outlineColor, getComputedStyle(document.body).backgroundColor]; }"""
    )
    element, style, width, ring, background = focused
    assert element == "email" and style == "solid" and float(width.rstrip("px")) >= 2
    assert contrast(ring, background) >= 3, f"{scheme}: focus ring {ring} on {background}"
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_service_mails_read_well_in_light_and_dark(browser: Any, scheme: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    config = parse_config({"web": {"base_url": "https://digest.example.org/"}}, tmp_path / "config.toml")
    sub = Subscriber(id=7, email="ann@example.org", rules=(Rule("diffusion"),), name="Ann")
    for render in (render_confirmation, render_welcome, render_reminder):
        mail = render(config, SECRET, sub)
        page = browser.new_page(color_scheme=scheme)
        try:
            page.route("**/*", lambda route: route.abort())
            page.set_content(mail.html, wait_until="load")
            assert_accessible(page, f"{render.__name__}, {scheme}")
            expect(page.get_by_role("article")).to_have_accessible_name(mail.subject)
        finally:
            page.close()
