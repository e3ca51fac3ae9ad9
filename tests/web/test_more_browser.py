""" "More like this" in headless Chromium: open the link from a digest, press the button, see the rule on
the manage page. A real uvicorn server, SQLite; screenshots go to test-artifacts/web/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from live_server import LiveServer, console_problems, screenshot
from test_web_browser import LazyPool
from web_helpers import NOW, SECRET, Clock, make_config

from digest.demo.smtp_sink import SmtpSink
from digest.models import SubscriberStatus
from digest.store import subscribers as repo
from digest.tokens import make_token
from digest.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def served_url(papers_engine: sa.Engine, sink: SmtpSink, clock: Clock, tmp_path: Path) -> Iterator[str]:
    with LiveServer() as live:
        config = make_config(tmp_path, sink.port, web={"base_url": live.url}, semantic={"enabled": True})
        app = create_app(config, papers_engine, LazyPool.to_sink(sink.port), clock=clock)
        with live.serve(app):
            yield live.url


def test_a_reader_adds_more_like_this_with_one_button_in_a_browser(
    served_url: str, papers_engine: sa.Engine, browser: Any
) -> None:
    from playwright.sync_api import expect

    sub = repo.add_subscriber(
        papers_engine, "ann@example.org", ["agents"], now=NOW, status=SubscriberStatus.ACTIVE
    )
    page = browser.new_context(viewport={"width": 800, "height": 700}).new_page()
    problems = console_problems(page)
    page.goto(f"{served_url}/more/{make_token(SECRET, 'more', sub.id, sub.token_version)}/2602.00001")
    expect(page.get_by_role("heading", level=1)).to_have_text("More like this")
    expect(page.locator("main")).to_contain_text("«Video Diffusion Models at Scale»")
    screenshot(page, "web", "more-01-button")
    assert [r.query for r in repo.get_subscriber(papers_engine, sub.id).rules] == ["agents"]  # type: ignore[union-attr]

    page.get_by_role("button", name="Add more like this").click()
    expect(page.get_by_role("status")).to_contain_text("Added.")
    screenshot(page, "web", "more-02-added")
    assert [r.query for r in repo.get_subscriber(papers_engine, sub.id).rules] == [  # type: ignore[union-attr]
        "agents",
        "like:2602.00001",
    ]
    page.get_by_role("link", name="See or change your rules").click()
    expect(page.locator("ul.liked")).to_contain_text("like:2602.00001: «Video Diffusion Models at Scale»")
    expect(page.get_by_label("Rules, one per line")).to_have_value("agents\nlike:2602.00001")
    screenshot(page, "web", "more-03-manage")
    assert problems == []
