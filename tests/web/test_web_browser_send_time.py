"""In headless Chromium: the subscribe form pre-selects the browser's own time zone (Intl API, app.js)."""

from __future__ import annotations

from typing import Any

import pytest
from test_web_browser import Served, _mail, served  # noqa: F401  (the live server fixture)

from digest.store import subscribers as repo

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_the_browser_zone_is_preselected_and_stored_with_the_send_time(
    served: Served,  # noqa: F811
    browser: Any,
    zone: str,
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(timezone_id=zone)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served.url + "/")
    expect(page.locator("#timezone")).to_have_value(zone)
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Rules, one per line").fill("diffusion")
    page.get_by_label("Send time").select_option("07:15")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    # The form is stored after the answer (the same answer for every address): its confirmation mail is sent
    # once it is stored, so wait for that mail before reading the database.
    _mail(served.sink, 1)
    sub = repo.find_subscriber(served.engine, "ann@example.org")
    assert sub is not None and (sub.send_time, sub.timezone) == ("07:15", zone)
    assert errors == []
    context.close()
