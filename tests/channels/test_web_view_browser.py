"""The archive and a digest's web view in headless Chromium (a real uvicorn server, SQLite, a real run)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels_helpers import DAY, NOW, SECRET, make_config
from live_server import LiveServer, NoMail, console_problems, screenshot

from digest.mailer import SmtpPool
from digest.models import SubscriberStatus
from digest.notices import archive_url
from digest.pipeline import RunOptions, run_digest
from digest.store import db
from digest.store import subscribers as repo
from digest.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path: Path, hf: Any, smtp_server: Any) -> Iterator[tuple[str, str]]:
    """The site on a loopback port after one real run; yields (site URL, archive path)."""
    import asyncio

    server = smtp_server()
    with LiveServer() as live:
        config = make_config(
            tmp_path,
            hf_url=hf.base_url,
            smtp_port=server.port,
            web={"base_url": live.url},
            digest={"max_papers": 2},
        )
        engine = db.open_database(config.database_url)
        sub = repo.add_subscriber(
            engine, "ada@example.org", ["agent*"], now=NOW, status=SubscriberStatus.ACTIVE
        )

        sent: list[int] = []

        async def one_run() -> None:
            async with SmtpPool(server.settings()) as pool:
                report = await run_digest(config, engine, DAY, pool, clock=lambda: NOW, options=RunOptions())
                sent.append(report.sent)

        # Playwright's sync API runs an event loop on this thread: the run gets a thread of its own.
        runner = threading.Thread(target=asyncio.run, args=(one_run(),))
        runner.start()
        runner.join(60)
        assert sent == [1]
        app = create_app(config, engine, NoMail(), clock=lambda: NOW + timedelta(hours=3))
        try:
            with live.serve(app):
                yield live.url, archive_url(config, SECRET, sub)[len(live.url) :]
        finally:
            engine.dispose()


def test_the_archive_opens_a_past_digest_styled_like_the_mail_without_any_csp_violation(
    served: tuple[str, str], browser: Any
) -> None:
    url, archive = served
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    problems = console_problems(page)
    page.goto(url + archive)
    assert page.title().startswith("Your past digests")
    assert page.locator("h1").inner_text() == "Your past digests"
    links = page.locator("ol.archive li a")
    assert links.count() == 1 and links.first.inner_text() == "Friday 21 August 2026"
    feed = page.locator('link[rel="alternate"][type="application/atom+xml"]').get_attribute("href")
    assert feed and feed.startswith(url + "/feed/") and feed.endswith(".atom")
    screenshot(page, "channels", "archive")

    links.first.click()
    page.wait_for_load_state()
    assert "/d/" in page.url
    assert page.locator("h1").inner_text() == "Friday 21 August 2026"
    # The mail's inline styles apply (the page's CSP allows inline style and nothing else).
    size = page.eval_on_selector("h1", "e => getComputedStyle(e).fontSize")
    assert size == "24px"  # digest.css, inlined; a browser's own h1 is 32px
    papers = page.locator("a[href^='https://huggingface.co/papers/2608.']")
    assert papers.count() > 2, "the web view shows every paper, not only the mail's first two"
    screenshot(page, "channels", "digest")
    page.get_by_text("All your past digests").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Your past digests"
    assert problems == [], problems
    context.close()
