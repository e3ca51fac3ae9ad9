"""``GET /feed/{token}.atom``: the papers a subscriber's rules match, as an Atom feed.

The same papers the mail's plan matches (the stored papers of the window, the same upvote floor, the same
rules), over the last FEED_DAYS days. Readers poll: the ETag and Last-Modified come from what the feed is
made of (the subscriber's rules and the window's papers) and are checked before anything is matched or
built, so an unchanged feed costs two small queries and answers 304.

A paused subscriber's feed keeps working (pausing stops mail, not reading); an unsubscribed or deleted one
answers 410 Gone, which tells a reader to stop polling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from digest.channels.feed import FeedEntry, build_atom
from digest.config import Config
from digest.errors import TokenError
from digest.models import Subscriber, SubscriberStatus
from digest.rules import BatchMatcher
from digest.store import channels as store
from digest.store.db import Engine
from digest.web.archive import Revoked, read_link

FEED_DAYS = 30
FEED_MAX = 100
ATOM = "application/atom+xml; charset=utf-8"
#: Readers may reuse the answer for a few minutes, then ask again with If-None-Match.
CACHE = "private, max-age=300"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def router(config: Config, engine: Engine, *, clock: Callable[[], datetime] = utc_now) -> APIRouter:
    """The feed route (included by ``web/app.py``)."""
    secret = config.secret_key()
    api = APIRouter()

    @api.get("/feed/{token}.atom")
    def feed(request: Request, token: str) -> Response:
        """The subscriber's matched papers as Atom; 304 when the reader's copy is current."""
        try:
            sub = read_link(engine, secret, "feed", token)
        except TokenError:
            return PlainTextResponse("This feed address is not valid.\n", status_code=404)
        except Revoked:
            return _gone()
        if sub.status == SubscriberStatus.UNSUBSCRIBED:
            return _gone()
        today = clock().astimezone(config.schedule.zone).date()
        start = today - timedelta(days=FEED_DAYS - 1)
        count, latest = store.papers_stamp(engine, start, today)
        modified = (latest or _EPOCH).astimezone(UTC).replace(microsecond=0)
        etag = _etag(sub, config.source.min_upvotes, start.isoformat(), count, modified)
        headers = {
            "etag": etag,
            "last-modified": format_datetime(modified, usegmt=True),
            "cache-control": CACHE,
        }
        if _not_modified(request, etag, modified):
            return Response(status_code=304, headers=headers)
        papers = store.papers_first_seen(engine, start, today, min_upvotes=config.source.min_upvotes)
        seen = {p.id: when for p, when in papers}
        matched = BatchMatcher([p for p, _ in papers]).select(sub.rules) if papers else []
        entries = sorted(
            (FeedEntry(m.paper, seen[m.paper.id], "; ".join(e.describe() for e in m.why)) for m in matched),
            key=lambda e: (e.first_seen, e.paper.id),
            reverse=True,
        )[:FEED_MAX]
        body = build_atom(
            feed_url=f"{config.web.base_url}/feed/{token}.atom",
            site_url=config.web.base_url,
            title=f"{config.digest.title}: your papers",
            entries=entries,
            updated=entries[0].first_seen if entries else modified,
        )
        return Response(body, media_type=ATOM, headers=headers)

    return api


def _gone() -> Response:
    return PlainTextResponse(
        "This feed has ended: the subscription was cancelled or its data deleted.\n", status_code=410
    )


def _etag(sub: Subscriber, min_upvotes: int, start: str, count: int, modified: datetime) -> str:
    rules = "\n".join(r.query for r in sub.rules)
    key = f"{sub.id}|{sub.token_version}|{rules}|{min_upvotes}|{start}|{count}|{modified.isoformat()}"
    return '"' + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str, modified: datetime) -> bool:
    """RFC 9110: If-None-Match decides when present; otherwise If-Modified-Since."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = [t.strip().removeprefix("W/") for t in match.split(",")]
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return modified <= when
    return False
