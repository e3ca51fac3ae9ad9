"""End to end in headless Chromium: a real uvicorn server, a real SMTP server, SQLite.

Fill the form, watch the live preview, submit, open the confirmation link from the mail, edit the rules on
the manage page, unsubscribe through the mail's link. Screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from live_server import LiveServer, console_problems, screenshot
from web_helpers import Clock, make_config

from digest.demo.smtp_sink import SmtpSink
from digest.mailer import SmtpPool, SmtpSettings
from digest.store import subscribers as repo
from digest.web import create_app

pytestmark = pytest.mark.browser


class LazyPool:
    """An SmtpPool opened on first use, inside the server's own event loop (a pool belongs to one loop)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.pool: SmtpPool | None = None

    @classmethod
    def to_sink(cls, port: int) -> LazyPool:
        """A one-connection pool to the loopback SMTP sink on ``port``."""
        return cls(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=5, pool_size=1))

    async def send(self, sender: str, recipient: str, message: bytes) -> object:
        if self.pool is None:
            self.pool = await SmtpPool(self.settings).__aenter__()
        return await self.pool.send(sender, recipient, message)


@dataclass
class Served:
    url: str
    engine: sa.Engine
    sink: SmtpSink


@pytest.fixture
def served(papers_engine: sa.Engine, sink: SmtpSink, clock: Clock, tmp_path: Path) -> Iterator[Served]:
    with LiveServer() as live:
        config = make_config(tmp_path, sink.port, web={"base_url": live.url})
        app = create_app(config, papers_engine, LazyPool.to_sink(sink.port), clock=clock)
        with live.serve(app):
            yield Served(live.url, papers_engine, sink)


def _shot(page: Any, name: str) -> None:
    screenshot(page, "web", name)


def _mail(sink: SmtpSink, count: int) -> Any:
    assert sink.wait_for(count, timeout=10), f"expected {count} mails, got {sink.count}"
    return sink.messages[count - 1]


def test_a_visitor_subscribes_confirms_edits_and_unsubscribes_in_a_browser(
    served: Served, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    # A form sent with bad rules answers 400 on purpose; anything else in the console is a bug (CSP, JS).
    problems = console_problems(page, expected_status=400)

    page.goto(served.url + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("AI papers")
    _shot(page, "01-subscribe")

    page.get_by_label("Email address").fill("ann@example.org")
    rules = page.get_by_label("Rules, one per line")
    rules.press_sequentially("diffusion", delay=20)
    preview = page.locator("#preview")
    expect(preview.locator(".papers li").first).to_contain_text("Video Diffusion Models at Scale")
    expect(preview).to_contain_text("matched: diffusion in")
    expect(preview).not_to_contain_text("An Old Diffusion Paper")
    _shot(page, "02-live-preview")

    rules.press("End")
    rules.press_sequentially("\ntitle:(agent OR", delay=10)
    expect(preview.locator(".problems pre")).to_contain_text("title:(agent OR")
    expect(page.locator("#preview-status")).to_contain_text("Line 2, character 14")
    _shot(page, "03-rule-error")
    rules.fill("diffusion\nagents")
    expect(preview.locator(".papers li")).to_have_count(3)

    page.get_by_label("Your name").fill("Ann")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    _shot(page, "04-check-your-inbox")

    confirmation = _mail(served.sink, 1)
    page.goto(links_in_base(confirmation, served.url)["confirm"])
    # Opening the link (what a mail scanner does too) only shows the button.
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    assert repo.find_subscriber(served.engine, "ann@example.org").status.value == "pending"  # type: ignore[union-attr]
    page.reload()
    assert repo.find_subscriber(served.engine, "ann@example.org").status.value == "pending"  # type: ignore[union-attr]
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    _shot(page, "05-confirmed")

    welcome = _mail(served.sink, 2)
    links = links_in_base(welcome, served.url)
    page.goto(links["manage"])
    expect(page.get_by_label("Rules, one per line")).to_have_value("diffusion\nagents")
    page.get_by_label("Rules, one per line").fill("robot*\n-video")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".problems pre")).to_contain_text("-video")
    page.get_by_label("Rules, one per line").fill('robot*\n"flow matching"')
    page.get_by_label("Once a week, on").check()
    page.get_by_label("Day of the week").select_option("4")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_have_text("Saved.")
    expect(page.locator("main")).to_contain_text("every Friday")
    _shot(page, "06-manage-saved")
    sub = repo.find_subscriber(served.engine, "ann@example.org")
    assert sub is not None and [r.query for r in sub.rules] == ["robot*", '"flow matching"']
    assert (sub.cadence.value, sub.weekday, sub.status.value) == ("weekly", 4, "active")

    # The digest's List-Unsubscribe link is the same URL (digest.notices.unsubscribe_url).
    assert welcome.message["List-Unsubscribe"] == f"<{links['u']}>"
    page.goto(links["u"])
    _shot(page, "07-unsubscribe-page")
    assert repo.find_subscriber(served.engine, "ann@example.org").status.value == "active"  # type: ignore[union-attr]
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    _shot(page, "08-unsubscribed")
    assert repo.find_subscriber(served.engine, "ann@example.org").status.value == "unsubscribed"  # type: ignore[union-attr]
    assert problems == []
    context.close()


def test_a_mail_scanner_that_opens_the_confirmation_link_in_a_browser_confirms_nothing(
    served: Served, browser: Any
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=served.url) as client:
        form = client.get("/").text
        token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.post("/subscribe", data={"email": "cy@example.org", "rules": "diffusion", "csrf_token": token})
    link = links_in_base(_mail(served.sink, 1), served.url)["confirm"]
    scanner = browser.new_context(user_agent="Mozilla/5.0 (compatible; Microsoft Safe Links scanner)")
    page = scanner.new_page()
    page.goto(link)
    expect(page.get_by_role("button", name="Confirm my subscription")).to_be_visible()
    page.goto(link)  # scanners fetch again, and follow the links they find
    page.request.head(link)
    scanner.close()
    assert repo.find_subscriber(served.engine, "cy@example.org").status.value == "pending"  # type: ignore[union-attr]
    assert served.sink.count == 1  # no welcome mail


def test_the_page_works_without_javascript_and_on_a_phone(served: Served, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    page = context.new_page()
    page.goto(served.url + "/")
    page.get_by_label("Email address").fill("bob@example.org")
    page.get_by_label("Rules, one per line").fill('"flow matching"')
    page.get_by_role("button", name="Preview matches").click()
    expect(page.locator("#preview .papers li")).to_have_count(1)
    expect(page.locator("#preview")).to_contain_text("Flow Matching for Images <script>alert(1)</script>")
    expect(page.get_by_label("Email address")).to_have_value("bob@example.org")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"
    _shot(page, "09-phone-no-js-preview")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert _mail(served.sink, 1).recipients == ("bob@example.org",)
    context.close()


def links_in_base(message: Any, base: str) -> dict[str, str]:
    """The links of a mail as absolute URLs on the served base."""
    text = message.message.get_body(preferencelist=("plain",)).get_content()
    found: dict[str, str] = {}
    for kind in ("confirm", "manage", "u"):
        marker = f"{base}/{kind}/"
        if marker in text:
            token = text.split(marker, 1)[1].split()[0]
            found[kind] = marker + token
    return found
