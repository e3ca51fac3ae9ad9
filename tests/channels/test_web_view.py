"""The web view of a sent digest (/d/), the archive (/archive/) and the Atom feed (/feed/…atom), after a real
run (captured HF day over HTTP, a real SMTP server), on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
import sqlalchemy as sa
from channels_helpers import DAY, NOW, SECRET, make_config
from live_server import NoMail

from digest.config import Config
from digest.mailer import SmtpPool
from digest.models import Paper, Subscriber, SubscriberStatus
from digest.notices import archive_url, digest_url, feed_url
from digest.pipeline import RunOptions, run_digest
from digest.store import db
from digest.store import subscribers as repo
from digest.store.papers import upsert_papers
from digest.store.tables import delivery, run
from digest.web import create_app
from digest.web.archive import DIGEST_CSP

BASE = "https://digest.example.org"
LATER = NOW + timedelta(hours=5)


@dataclass
class Site:
    config: Config
    engine: sa.Engine
    client: httpx.AsyncClient
    sub: Subscriber
    mail: EmailMessage

    def sub_now(self) -> Subscriber:
        found = repo.get_subscriber(self.engine, self.sub.id)
        assert found is not None
        return found


def _path(url: str) -> str:
    assert url.startswith(BASE), url
    return url[len(BASE) :]


@pytest.fixture
async def site(tmp_path: Path, hf: Any, smtp_server: Any, db_url: str) -> AsyncIterator[Site]:
    server = smtp_server()
    config = make_config(
        tmp_path, hf_url=hf.base_url, smtp_port=server.port, db_url=db_url, digest={"max_papers": 2}
    )
    engine = db.open_database(config.database_url)
    sub = repo.add_subscriber(
        engine, "ada@example.org", ["agent*", "title:PolicyGuide"], now=NOW, status=SubscriberStatus.ACTIVE
    )
    async with SmtpPool(server.settings()) as pool:
        report = await run_digest(
            config, engine, DAY, pool, clock=lambda: NOW, options=RunOptions(retry_base_s=0.05)
        )
    assert report.sent == 1, report
    [raw] = [m for m in server.messages if "ada@example.org" in m.recipients]
    mail = email.message_from_bytes(raw.data, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    app = create_app(config, engine, NoMail(), clock=lambda: LATER)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield Site(config, engine, client, sub, mail)
    engine.dispose()


def _part(mail: EmailMessage, kind: str) -> str:
    body = mail.get_body((kind,))
    assert body is not None
    return str(body.get_content())


async def test_the_mails_view_in_browser_and_and_n_more_links_open_the_whole_digest(site: Site) -> None:
    text, html = _part(site.mail, "plain"), _part(site.mail, "html")
    view = re.search(r"View in your browser: (\S+)", text)
    assert view, text[:300]
    url = view.group(1)
    assert url.startswith(f"{BASE}/d/")
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs[0] == url, "the link heads the digest"
    more = re.search(r"and (\d+) more on <a href=\"([^\"]+)\"", html)
    assert more and more.group(2) == url and int(more.group(1)) >= 1
    page = await site.client.get(_path(url))
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == DIGEST_CSP
    assert "noindex" in page.headers["x-robots-tag"]
    in_mail = set(re.findall(r"https://huggingface.co/papers/(\d{4}\.\d{5})\"", html))
    assert len(in_mail) == 2
    titles = re.findall(r"https://huggingface.co/papers/(\d{4}\.\d{5})\"", page.text)
    assert len(set(titles)) == 2 + int(more.group(1)), "the web view shows the papers the mail only counted"
    assert "2608.19880" in titles and "2608.19861" in titles
    assert in_mail < set(titles)
    assert "All your past digests" in page.text and "more on" not in page.text


async def test_the_archive_lists_past_digests_newest_first_in_pages(site: Site) -> None:
    # Twenty-four earlier digests, one a day, besides the real one.
    with site.engine.begin() as conn:
        for n in range(1, 25):
            day = DAY - timedelta(days=n)
            run_id = conn.execute(
                run.insert().values(run_date=day, status="done", started_at=NOW, papers_fetched=1)
            ).inserted_primary_key[0]
            conn.execute(
                delivery.insert().values(
                    run_id=run_id,
                    subscriber_id=site.sub.id,
                    local_date=day,
                    state="sent" if n != 3 else "failed",
                    attempts=1,
                    paper_ids=["2608.19880"] * (n % 3 + 1),
                    updated_at=NOW,
                )
            )
    path = _path(archive_url(site.config, SECRET, site.sub))
    first = await site.client.get(path)
    assert first.status_code == 200
    days = re.findall(r'<li><a href="(/d/[^"]+)">([^<]+)</a>', first.text)
    assert len(days) == 20
    assert days[0][1] == "Friday 21 August 2026" and days[1][1] == "Thursday 20 August 2026"
    assert "Tuesday 18 August 2026" not in first.text, "a failed delivery is not in the archive"
    assert "24 digests" in first.text and "Page 1 of 2" in first.text
    second = await site.client.get(path, params={"page": "2"})
    older = re.findall(r'<li><a href="(/d/[^"]+)">([^<]+)</a>', second.text)
    assert len(older) == 4 and older[-1][1] == "Tuesday 28 July 2026"
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text
    assert (await site.client.get(path, params={"page": "x"})).status_code == 200
    opened = await site.client.get(days[1][0])
    assert opened.status_code == 200 and "20 August 2026" in opened.text
    assert feed_url(site.config, SECRET, site.sub).split("/feed/")[0] in first.text


async def test_the_feed_parses_back_with_stable_ids_first_seen_dates_summaries_and_links(site: Site) -> None:
    answer = await site.client.get(_path(feed_url(site.config, SECRET, site.sub)))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    by_id = {e.id: e for e in feed.entries}
    assert "arXiv:2608.19880" in by_id and "arXiv:2608.19861" in by_id
    assert all(i.startswith("arXiv:") for i in by_id)
    env = by_id["arXiv:2608.19880"]
    assert datetime(*env.updated_parsed[:6], tzinfo=UTC) == NOW  # first seen by the run
    links = {link.get("title"): link.href for link in env.links}
    assert links["Hugging Face"] == "https://huggingface.co/papers/2608.19880"
    assert links["arXiv"] == "https://arxiv.org/abs/2608.19880"
    assert links["PDF"] == "https://arxiv.org/pdf/2608.19880"
    assert links["Code"] == "https://github.com/google-research/envharness"
    assert env.link == links["Hugging Face"]
    # The AI summary when there is one, else the abstract.
    no_ai = by_id["arXiv:2608.19861"]
    assert "PolicyGuide" in no_ai.title
    assert len(no_ai.summary) > 200
    assert len(env.summary) < len(no_ai.summary) + 2000


async def test_the_feed_answers_304_to_a_reader_whose_copy_is_current_and_200_when_papers_arrive(
    site: Site,
) -> None:
    path = _path(feed_url(site.config, SECRET, site.sub))
    first = await site.client.get(path)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")
    same = await site.client.get(path, headers={"if-none-match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    since = await site.client.get(path, headers={"if-modified-since": modified})
    assert since.status_code == 304
    stale = await site.client.get(path, headers={"if-none-match": '"other"', "if-modified-since": modified})
    assert stale.status_code == 200, "If-None-Match decides when both are sent"
    new = Paper(id="2608.29999", title="Agents everywhere", summary="Agents.", daily_date=DAY, upvotes=5)
    upsert_papers(site.engine, [new], NOW + timedelta(hours=2))
    fresh = await site.client.get(path, headers={"if-none-match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag
    assert feedparser.parse(fresh.content).entries[0].id == "arXiv:2608.29999"
    later = format_datetime(NOW + timedelta(hours=2), usegmt=True)
    assert (await site.client.get(path, headers={"if-modified-since": later})).status_code == 304


async def test_a_paused_feed_keeps_working_and_unsubscribing_or_deleting_ends_every_link(site: Site) -> None:
    feed = _path(feed_url(site.config, SECRET, site.sub))
    archive = _path(archive_url(site.config, SECRET, site.sub))
    view = _path(digest_url(site.config, SECRET, site.sub, DAY))
    repo.set_status(site.engine, site.sub.id, SubscriberStatus.PAUSED, now=LATER)
    assert (await site.client.get(feed)).status_code == 200
    repo.set_status(site.engine, site.sub.id, SubscriberStatus.UNSUBSCRIBED, now=LATER)
    assert (await site.client.get(feed)).status_code == 410
    assert (await site.client.get(view)).status_code == 200, "the mail they got still opens"
    repo.delete_subscriber_data(site.engine, site.sub.id, LATER)
    for path in (feed, archive, view):
        assert (await site.client.get(path)).status_code == 410, path
    # Links made after the deletion with the old version are dead too; forged ones are 404.
    assert (await site.client.get(_path(feed_url(site.config, SECRET, site.sub)))).status_code == 410
    assert (await site.client.get("/feed/1.0.AAAA.BBBB.atom")).status_code == 404
    assert (await site.client.get("/archive/" + archive.split("/")[-1][:-2] + "xx")).status_code == 404
    assert (await site.client.get("/d/nonsense")).status_code == 404


async def test_a_token_of_one_purpose_opens_no_other_page(site: Site) -> None:
    archive_token = archive_url(site.config, SECRET, site.sub).rsplit("/", 1)[1]
    feed_token = feed_url(site.config, SECRET, site.sub).rsplit("/", 1)[1].removesuffix(".atom")
    assert (await site.client.get(f"/feed/{archive_token}.atom")).status_code == 404
    assert (await site.client.get(f"/archive/{feed_token}")).status_code == 404
    assert (await site.client.get(f"/d/{archive_token}")).status_code == 404
    assert site.sub_now().status == SubscriberStatus.ACTIVE, "a GET changes nothing"
