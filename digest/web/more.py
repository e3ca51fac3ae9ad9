""" "More like this" (DESIGN.md section 9): the link under each paper of a digest adds ``like:<paper>``.

``GET /more/{token}/{paper}`` only shows a page with a button (mail scanners prefetch every link);
``POST`` (CSRF-protected like the other forms) adds the rule. The token is signed for its own purpose
("more"), so a manage or unsubscribe token does not work here, nor the other way round.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from digest import likes
from digest.errors import RuleError, SubscriberError, TokenError
from digest.models import Rule, Subscriber
from digest.rules import parse_cached
from digest.sources.schema import ARXIV_ID
from digest.store import subscribers as repo
from digest.store.db import Engine
from digest.store.embeddings import paper_titles
from digest.web.site import Site, SiteDep, path_of

log = logging.getLogger(__name__)

router = APIRouter()


def liked_rules(engine: Engine, rules: Sequence[Rule]) -> list[dict[str, str]]:
    """The subscriber's ``like:`` rules with the liked papers' titles (for the manage page)."""
    found: list[tuple[str, str]] = []
    for rule in rules:
        try:
            ids = [like.paper_id for like in parse_cached(rule.query).likes]
        except RuleError:
            continue
        found.extend((rule.query, pid) for pid in ids)
    titles = paper_titles(engine, [pid for _, pid in found]) if found else {}
    return [{"rule": query, "id": pid, "title": titles.get(pid, "")} for query, pid in found]


def _page(
    site: Site, request: Request, sub: Subscriber, paper_id: str, status: int = 200, **extra: Any
) -> HTMLResponse:
    title = paper_titles(site.engine, [paper_id]).get(paper_id, "")
    context = {
        "sub": sub,
        "paper_id": paper_id,
        "paper_title": title,
        "rule": f"like:{paper_id}",
        "manage_path": path_of(site.links(sub)["manage_url"]),
        "page_url": str(request.url.path),
        "done": False,
        "already": False,
        "error": "",
    }
    context.update(extra)
    return site.with_csrf(request, lambda token: site.page("more.html", status, csrf_token=token, **context))


def _check(site: Site, token: str, paper: str) -> Subscriber | HTMLResponse:
    if not likes.enabled(site.config):
        return site.message(404, "Page not found", "There is nothing at this address.")
    try:
        sub = site.subscriber_from("more", token)
    except TokenError as exc:
        return site.token_failure(exc)
    if len(paper) > 32 or not ARXIV_ID.match(paper):
        return site.message(404, "Page not found", "This link does not name a paper.")
    return sub


@router.get("/more/{token}/{paper}", response_class=HTMLResponse)
def more_page(request: Request, token: str, paper: str, site: SiteDep) -> HTMLResponse:
    """The page behind a "More like this" link: a button, nothing changed (scanners prefetch links)."""
    found = _check(site, token, paper)
    if isinstance(found, HTMLResponse):
        return found
    return _page(site, request, found, paper, already=_has(found, paper))


@router.post("/more/{token}/{paper}", response_class=HTMLResponse)
def more_add(
    request: Request, token: str, paper: str, site: SiteDep, csrf_token: Annotated[str, Form()] = ""
) -> HTMLResponse:
    """Add ``like:<paper>`` to the subscriber's rules (once)."""
    found = _check(site, token, paper)
    if isinstance(found, HTMLResponse):
        return found
    sub = found
    if not site.csrf_ok(request, csrf_token):
        return _page(
            site,
            request,
            sub,
            paper,
            403,
            error="The form had expired or came from another site. Nothing was changed.",
        )
    if sub.managed_by_config:
        return _page(
            site, request, sub, paper, 403, error="The operator manages this subscription; ask them."
        )
    if not _has(sub, paper):
        try:
            sub = repo.set_rules(
                site.engine, sub.id, [r.query for r in sub.rules] + [f"like:{paper}"], now=site.clock()
            )
        except (SubscriberError, RuleError) as exc:
            return _page(site, request, sub, paper, 400, error=str(exc).splitlines()[0])
        log.info("subscriber %s added like:%s", sub.id, paper)
    return _page(site, request, sub, paper, done=True)


def _has(sub: Subscriber, paper: str) -> bool:
    return any(r.query.strip() == f"like:{paper}" for r in sub.rules)
