"""The console end to end in headless Chromium on a phone-sized screen: sign in, read the dashboard, search,
open a subscriber's history, reactivate a bounced address, pause and release all sending. A real uvicorn
server, SQLite. Screenshots go to test-artifacts/admin/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from admin_helpers import HASH_ENV, PASSWORD, USER, admin_config, password_hash
from console_seed import add_delivery, add_run, set_status
from live_server import LiveServer, NoMail, console_problems, screenshot
from web_helpers import Clock

from digest.models import SubscriberStatus
from digest.store import audit
from digest.store.settings import sending_pause
from digest.store.subscribers import Consent, add_subscriber
from digest.store.tables import subscriber
from digest.web import create_app

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}


@dataclass
class Served:
    url: str
    engine: sa.Engine
    ada: int


@pytest.fixture
def served(
    papers_engine: sa.Engine, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    monkeypatch.setenv(HASH_ENV, password_hash())
    engine = papers_engine
    now = clock()
    consent = Consent(at=now, source="web", ip="198.51.100.7", user_agent="Firefox 140", form=None)
    ada = add_subscriber(
        engine,
        "ada@example.org",
        ["diffusion", "title:agents"],
        now=now,
        status=SubscriberStatus.ACTIVE,
        consent=consent,
    ).id
    for i, status in enumerate([SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED, SubscriberStatus.ACTIVE]):
        add_subscriber(engine, f"reader{i}@example.org", ["agents"], now=now, status=status)
    for back, state, reply in [
        (2, "sent", "250 2.0.0 Ok: queued as 4F2A"),
        (0, "failed", "550 5.1.1 <ada@example.org>: mailbox unknown"),
    ]:
        run_id = add_run(engine, now.date() - timedelta(days=back), now)
        add_delivery(
            engine, run_id, ada, state, now, last_reply=reply, paper_ids=["2602.00001", "2602.00003"]
        )
    set_status(engine, ada, "bounced")

    with LiveServer() as live:
        config = admin_config(tmp_path, 2525, web={"base_url": live.url})
        app = create_app(config, engine, NoMail("the console sent a mail"), clock=clock)
        with live.serve(app):
            yield Served(live.url, engine, ada)


def _shot(page: Any, name: str) -> None:
    screenshot(page, "admin", name)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True)


def _fits(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways on a phone ({width}px)"


def test_an_operator_signs_in_finds_ada_reactivates_her_and_pauses_sending_on_a_phone(
    served: Served, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    # The wrong password answers 401 on purpose; anything else in the console is a bug (CSP, script).
    problems = console_problems(page, expected_status=401)

    page.goto(served.url + "/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_label("Name").fill(USER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong name or password.")
    _shot(page, "01-login-refused")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    chart = page.get_by_role("img", name="Digests per day")
    expect(chart).to_be_visible()
    expect(page.locator(".legend")).to_contain_text("failed 1")
    expect(page.locator("#chart-summary")).to_contain_text("1 sent, 1 failed, 0 uncertain")
    _fits(page)
    _shot(page, "02-dashboard")

    nav(page, "Subscribers").click()
    page.get_by_label("Address contains").fill("ada")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status")).to_have_text("1 subscriber.")
    _fits(page)
    _shot(page, "03-search")

    page.get_by_role("link", name="ada@example.org").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("ada@example.org")
    history = page.locator("table.list")
    expect(history).to_contain_text("550 5.1.1 <ada@example.org>: mailbox unknown")
    expect(history).to_contain_text("250 2.0.0 Ok: queued as 4F2A")
    expect(history.get_by_role("link", name="2602.00003").first).to_be_visible()
    # Shown as cards on a phone, still a table to a screen reader: a header row and one row per delivery.
    expect(page.get_by_role("table", name="Every delivery, newest first").get_by_role("row")).to_have_count(3)
    expect(page.get_by_role("cell", name="550 5.1.1 <ada@example.org>: mailbox unknown")).to_be_visible()
    expect(page.locator("main")).to_contain_text("198.51.100.7")
    _fits(page)
    _shot(page, "04-subscriber-history")

    page.get_by_role("button", name="Reactivate…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Reactivate")
    _shot(page, "05-reactivate-confirm")
    page.get_by_role("button", name="Yes, reactivate").click()
    expect(page.get_by_role("status").first).to_have_text("Done: reactivate.")
    _shot(page, "06-reactivated")
    with served.engine.connect() as conn:
        status = conn.execute(sa.select(subscriber.c.status).where(subscriber.c.id == served.ada)).scalar()
    assert status == "active"

    nav(page, "Dashboard").click()
    page.get_by_label("Reason").fill("relay maintenance")
    page.get_by_role("button", name="Pause all sending…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pause all sending?")
    page.get_by_role("button", name="Yes, pause all sending").click()
    expect(page.get_by_role("alert")).to_contain_text("Sending is paused")
    assert sending_pause(served.engine).paused
    nav(page, "Dashboard").click()
    _fits(page)
    _shot(page, "07-sending-paused")
    page.get_by_role("button", name="Release sending…").click()
    page.get_by_role("button", name="Yes, release sending").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert not sending_pause(served.engine).paused

    nav(page, "Audit").click()
    expect(page.locator("table.list")).to_contain_text("sending.release")
    _shot(page, "08-audit")
    actions = [e.action for e in audit.recent(served.engine)]
    assert actions == ["sending.release", "sending.pause", "subscriber.reactivate", "login"]
    assert problems == [], problems  # no CSP violation, no script error
    context.close()


def test_an_expired_session_goes_back_to_the_sign_in_page(served: Served, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(served.url + "/admin/login")
    page.get_by_label("Name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    _shot(page, "09-dashboard-wide")
    cookie = next(c for c in context.cookies() if c["name"] == "digest_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    assert page.evaluate("document.cookie").find("digest_admin") == -1  # invisible to scripts
    context.clear_cookies()
    page.goto(served.url + "/admin/subscribers")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    context.close()
