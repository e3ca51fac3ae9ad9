""" "More like this": the link under each paper of a digest, its page (GET changes nothing) and its button
(POST adds like:<paper>), in-process; the manage page lists like: rules with the liked papers' titles."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from semantic_helpers import without_extra
from web_helpers import BASE, NOW, SECRET, Web, make_config

from digest.compose import Composer
from digest.config import Config
from digest.models import Subscriber, SubscriberStatus
from digest.rules import BatchMatcher
from digest.store import subscribers as repo
from digest.store.papers import load_papers
from digest.tokens import make_token
from digest.web.more import liked_rules

__all__ = ["without_extra"]

CSRF = 'name="csrf_token" value="'
LIKED = "2602.00001"  # Video Diffusion Models at Scale (web_helpers.week_of_papers)


def semantic(tmp_path: Path, port: int, enabled: bool = True) -> Config:
    return make_config(tmp_path, port, semantic={"enabled": enabled, "threshold": 0.5})


def active(engine: sa.Engine, *rules: str, email: str = "ann@example.org") -> Subscriber:
    return repo.add_subscriber(engine, email, list(rules), now=NOW, status=SubscriberStatus.ACTIVE)


def more_path(sub: Subscriber, paper: str = LIKED, purpose: str = "more") -> str:
    return f"/more/{make_token(SECRET, purpose, sub.id, sub.token_version)}/{paper}"  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    return html.split(CSRF, 1)[1].split('"', 1)[0]


async def test_the_page_only_shows_a_button_and_changes_nothing(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents")
    for _ in range(2):  # a scanner fetching the link twice
        page = await web.client.get(more_path(sub))
        assert page.status_code == 200
        assert "Add more like this" in page.text and '<form method="post"' in page.text
        assert "«Video Diffusion Models at Scale»" in page.text
    assert [r.query for r in repo.get_subscriber(web.engine, sub.id).rules] == ["agents"]  # type: ignore[union-attr]


async def test_the_button_adds_the_like_rule_once(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents")
    page = await web.client.get(more_path(sub))
    for _ in range(2):
        done = await web.client.post(more_path(sub), data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 200
        assert "Added." in done.text and f"like:{LIKED}" in done.text
    rules = [r.query for r in repo.get_subscriber(web.engine, sub.id).rules]  # type: ignore[union-attr]
    assert rules == ["agents", f"like:{LIKED}"]
    again = await web.client.get(more_path(sub))
    assert "already bring papers similar" in again.text


async def test_the_button_needs_the_form_token(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents")
    await web.client.get(more_path(sub))  # the CSRF cookie is set, but the form field is missing
    refused = await web.client.post(more_path(sub), data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert [r.query for r in repo.get_subscriber(web.engine, sub.id).rules] == ["agents"]  # type: ignore[union-attr]


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe"])
async def test_a_token_signed_for_another_purpose_does_not_work(
    web_factory, tmp_path: Path, purpose: str
) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents")
    page = await web.client.get(more_path(sub, purpose=purpose))
    assert page.status_code == 404 and "not valid" in page.text
    manage = await web.client.get(f"/manage/{make_token(SECRET, 'more', sub.id, sub.token_version)}")
    assert manage.status_code == 404


async def test_a_link_that_names_no_paper_is_refused(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents")
    page = await web.client.get(more_path(sub, paper="not-a-paper"))
    assert page.status_code == 404


async def test_without_semantic_the_routes_do_not_exist(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25, enabled=False))
    sub = active(web.engine, "agents")
    assert (await web.client.get(more_path(sub))).status_code == 404


async def test_the_manage_page_lists_like_rules_with_their_titles(web_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web: Web = await web_factory(config=semantic(tmp_path, 25))
    sub = active(web.engine, "agents", f"like:{LIKED} -survey", "like:2501.99999")
    page = await web.client.get(f"/manage/{make_token(SECRET, 'manage', sub.id, sub.token_version)}")
    assert page.status_code == 200
    assert f"<code>like:{LIKED} -survey</code>: «Video Diffusion Models at Scale»" in page.text
    assert "paper 2501.99999 (not fetched yet)" in page.text
    assert liked_rules(web.engine, sub.rules)[0]["title"] == "Video Diffusion Models at Scale"


async def test_the_subscribe_form_refuses_like_rules_without_the_extra(web: Web, without_extra: None) -> None:
    answer = await web.subscribe("bob@example.org", rules=f"diffusion\nlike:{LIKED}")
    assert answer.status_code == 400
    assert "pip install &#39;paper-digest[semantic]&#39;" in answer.text
    assert repo.find_subscriber(web.engine, "bob@example.org") is None


def test_each_paper_of_a_digest_links_to_more_like_this_only_when_semantic_is_on(
    papers_engine: sa.Engine, tmp_path: Path
) -> None:
    papers = load_papers(papers_engine, date(2026, 2, 20), NOW.date())
    sub = active(papers_engine, "diffusion")
    for enabled in (True, False):
        config = semantic(tmp_path, 25, enabled)
        matches = BatchMatcher(papers).select(sub.rules)
        mail = Composer.for_config(config).compose(sub, matches, NOW.date(), NOW)
        assert mail is not None
        link = f"{BASE}{more_path(sub)}"
        assert (f'href="{link}"' in mail.html) is enabled
        assert (f"More like this: {link}" in mail.text) is enabled
        assert ("More like this" in mail.html) is enabled
