"""Routes of the unsubscribe link: a page with a button (GET) and RFC 8058 one-click (POST)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from digest.models import SubscriberStatus
from digest.store import subscribers as repo
from digest.web.site import SiteDep, path_of

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, site: SiteDep) -> HTMLResponse:
    # Link scanners fetch every URL in a mail: this page only shows a button.
    sub = site.subscriber_from("unsubscribe", token)  # a bad link: TokenError, answered by the app
    manage_path = path_of(site.links(sub)["manage_url"])
    return site.page("unsubscribe.html", sub=sub, done=False, manage_path=manage_path)


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe_now(token: str, site: SiteDep) -> HTMLResponse:
    """RFC 8058 one-click (form or multipart body ``List-Unsubscribe=One-Click``) and the page's button.

    The signed token is the authority, so no cookie or CSRF token is needed and the body is not read;
    always 200 (never a redirect) and idempotent.
    """
    sub = site.subscriber_from("unsubscribe", token)  # a bad link: TokenError, answered by the app
    if sub.status != SubscriberStatus.UNSUBSCRIBED:
        sub = repo.set_status(site.engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=site.clock())
        log.info("subscriber %s unsubscribed", sub.id)
    manage_path = path_of(site.links(sub)["manage_url"])
    return site.page("unsubscribe.html", sub=sub, done=True, manage_path=manage_path)
