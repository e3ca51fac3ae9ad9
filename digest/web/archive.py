"""``GET /d/{token}`` (one sent digest in the browser) and ``GET /archive/{token}`` (the past digests).

A digest page is re-rendered from its delivery's paper ids with the mail's own template (nothing is stored
twice): the papers of the mail and those it only counted in "and N more". Both pages are read-only (a GET
changes nothing) and keep working after an unsubscribe; "delete all my data" revokes their links (410).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from digest.config import Config
from digest.errors import TokenError
from digest.models import MatchedPaper, Subscriber, SubscriberStatus
from digest.notices import archive_url, digest_url, feed_url, manage_url, unsubscribe_url
from digest.render import DigestContext, render_digest
from digest.rules import BatchMatcher
from digest.store import channels as store
from digest.store import subscribers as repo
from digest.store.db import Engine
from digest.store.lookups import papers_by_ids
from digest.store.subscriber_rows import DELETED_DOMAIN
from digest.templating import environment
from digest.tokens import Purpose, read_digest_token, read_token

PAGE_SIZE = 20
MAX_TOKEN = 256
#: The mail's HTML carries inline styles (mail clients need them) and no script: the web view allows
#: exactly that and nothing else (no script, no form, no frame).
DIGEST_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_PRIVATE = {"x-robots-tag": "noindex, nofollow", "cache-control": "private, no-store"}


class Revoked(Exception):
    """The link was valid once but no longer is (the data was deleted, or the link replaced): 410."""


def subscriber_for(engine: Engine, sub_id: int, version: int) -> Subscriber:
    """The subscriber a verified token names; Revoked when deleted or the token version is stale."""
    sub = repo.get_subscriber(engine, sub_id)
    if sub is None or sub.email.endswith("@" + DELETED_DOMAIN) or sub.token_version != version:
        raise Revoked
    return sub


def read_link(engine: Engine, secret: str, purpose: Purpose, token: str) -> Subscriber:
    """The subscriber of an archive or feed token; TokenError (404) when forged, Revoked (410) when dead."""
    if len(token) > MAX_TOKEN:
        raise TokenError("this link is not valid")
    sub_id, version = read_token(secret, purpose, token)
    return subscriber_for(engine, sub_id, version)


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    day: str
    papers: str
    url: str


def _long_date(day: date) -> str:
    return day.strftime("%A %-d %B %Y")


class _Pages:
    """What the digest view and the archive share: config, database, signing key, the page renderer."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.secret = config.secret_key()
        self.env = environment()

    def show(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"web/{name}").render(
            site_title=self.config.digest.title, postal_address=self.config.digest.postal_address, **context
        )
        return HTMLResponse(html, status_code=status, headers=_PRIVATE)

    def dead_link(self, revoked: bool) -> HTMLResponse:
        if revoked:
            return self.show(
                "message.html",
                410,
                heading="This link no longer works",
                text="The subscription's data was deleted, so its digests and archive are gone.",
            )
        return self.show(
            "message.html",
            404,
            heading="This link is not valid",
            text="Check that the whole link was copied from the mail.",
        )

    def digest_page(self, token: str) -> Response:
        """One sent digest, re-rendered from its delivery's paper ids with the mail's template."""
        try:
            if len(token) > MAX_TOKEN:
                raise TokenError("this link is not valid")
            sub_id, version, day = read_digest_token(self.secret, token)
            sub = subscriber_for(self.engine, sub_id, version)
        except TokenError:
            return self.dead_link(False)
        except Revoked:
            return self.dead_link(True)
        ids = store.digest_paper_ids(self.engine, sub.id, day)
        if ids is None:
            return self.show(
                "message.html",
                404,
                heading="No digest for this day",
                text=f"No digest of {_long_date(day)} was sent to this address.",
            )
        html = render_digest(_web_context(self.config, self.secret, sub, day, ids, self.engine)).html
        return HTMLResponse(html, headers={**_PRIVATE, "content-security-policy": DIGEST_CSP})

    def archive_page(self, token: str, page: str) -> Response:
        """The subscriber's past digests, newest first, PAGE_SIZE a page (``?page=2``)."""
        try:
            sub = read_link(self.engine, self.secret, "archive", token)
        except TokenError:
            return self.dead_link(False)
        except Revoked:
            return self.dead_link(True)
        number = int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1
        number = max(number, 1)
        digests, total = store.sent_digests(self.engine, sub.id, PAGE_SIZE, (number - 1) * PAGE_SIZE)
        items = [
            ArchiveItem(
                _long_date(d.day),
                f"{d.papers} paper{'' if d.papers == 1 else 's'}",
                _path(digest_url(self.config, self.secret, sub, d.day)),
            )
            for d in digests
        ]
        return self.show(
            "archive.html",
            items=items,
            total=total,
            page_no=number,
            pages=max(1, -(-total // PAGE_SIZE)),
            token=token,
            feed_url=feed_url(self.config, self.secret, sub),
            paused=sub.status == SubscriberStatus.PAUSED,
        )


def router(config: Config, engine: Engine) -> APIRouter:
    """The routes of the digest web view and the archive (included by ``web/app.py``)."""
    pages = _Pages(config, engine)
    api = APIRouter()

    @api.get("/d/{token}", response_class=HTMLResponse)
    def digest_page(token: str) -> Response:
        return pages.digest_page(token)

    @api.get("/archive/{token}", response_class=HTMLResponse)
    def archive_page(token: str, page: str = "1") -> Response:
        return pages.archive_page(token, page)

    return api


def _path(url: str) -> str:
    # Pages link within the site they were served from (like the other pages).
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def _web_context(
    config: Config, secret: str, sub: Subscriber, day: date, ids: list[str], engine: Engine
) -> DigestContext:
    """The mail's context for the web: every planned paper (no "and N more"), linking to the archive."""
    found = {p.id: p for p in papers_by_ids(engine, ids)}
    papers = [found[i] for i in ids if i in found]
    why = {m.paper.id: m for m in BatchMatcher(papers).select(sub.rules)} if papers else {}
    # A paper planned under rules changed since is still shown, without an explanation.
    matched = [why.get(p.id) or MatchedPaper(p, ()) for p in papers]
    return DigestContext(
        recipient=sub.email,
        name=sub.name,
        run_date=day,
        papers=matched,
        rules=sub.rules,
        max_papers=max(len(matched), 1),
        manage_url=manage_url(config, secret, sub),
        unsubscribe_url=unsubscribe_url(config, secret, sub),
        postal_address=config.digest.postal_address,
        title=config.digest.title,
        base_url=config.source.base_url,
        view_url=archive_url(config, secret, sub),
        view_label="All your past digests",
        html_budget=None,  # a page is not clipped like a mail: every paper, abstracts included
    )
