"""Hostile text in the forms: cleaned where it enters (every field), never a 500 on PostgreSQL, never in a
page or a mail; bounced and unsubscribed addresses; errors for huge and bad rule boxes; same work for all."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from test_web_routes import _rows, _subscribe_and_confirm
from web_helpers import NOW, Web, links_in, mail_text

from digest.models import Paper, SubscriberStatus
from digest.store import subscribers as repo
from digest.store.papers import upsert_papers

HOSTILE = "\x00\x1b[2J\u202e\u2066\x9b\r\x07"
#: Only characters that cleaning drops (HOSTILE leaves the printable "[2J" of its escape behind).
CTRL = "\x00\x1b\u202e\u2066\x9b\r\x07\u200f"


def _clean(text: str) -> None:
    for c in "\x00\x1b\u202e\u2066\x9b\x07":
        assert c not in text, f"{c!r} got through"


async def test_every_subscribe_field_is_cleaned_and_nul_never_answers_500(
    web_factory: Any, any_engine: sa.Engine
) -> None:
    web: Web = await web_factory(engine=any_engine)
    answer = await web.subscribe(
        f"ann@exam{CTRL}ple.org", f"diff{CTRL}usion\n{CTRL}title:agents", name=f"A{HOSTILE}nn"
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (row,) = _rows(web.engine)
    assert (row.email, row.name) == ("ann@example.org", "A[2Jnn")
    assert repo.get_subscriber(web.engine, row.id).rules[0].query == "diffusion"  # type: ignore[union-attr]
    (mail,) = web.new_mail()
    _clean(mail.message.as_string())
    _clean(mail_text(mail))


async def test_the_manage_form_and_the_preview_take_nul_and_bidi_on_both_databases(
    web_factory: Any, any_engine: sa.Engine
) -> None:
    web: Web = await web_factory(engine=any_engine)
    links = await _subscribe_and_confirm(web)
    saved = await web.save_manage(links["manage"], rules=f"agents{CTRL}\n", cadence=f"daily{CTRL}")
    assert saved.status_code == 200 and "Saved." in saved.text
    _clean(saved.text)
    for answer in (
        await web.client.get("/preview", params={"rules": f"diffusion{HOSTILE}"}),
        await web.client.post("/preview", data={"rules": f"diffusion{HOSTILE}", "email": HOSTILE}),
    ):
        assert answer.status_code in (200, 403), answer.text
        _clean(answer.text)


async def test_the_preview_never_shows_bidi_or_controls_of_papers_stored_before_cleaning(web: Web) -> None:
    day = NOW.date()
    upsert_papers(
        web.engine,
        [Paper(id="2603.00001", title=f"Diffusion {HOSTILE} backwards", summary="diffusion", daily_date=day)],
        NOW,
    )
    answer = await web.client.get("/preview", params={"rules": "backwards"})
    assert answer.status_code == 200 and "backwards" in answer.text
    _clean(answer.text)


async def test_the_confirmation_mail_never_carries_bidi_or_nul_whoever_stored_the_rules(web: Web) -> None:
    # An admin import or a row stored before cleaning: the mail applies the digest's filter anyway.
    sub = repo.add_subscriber(web.engine, "eve@example.org", [f"diffusion {HOSTILE}x"], now=NOW)
    from digest.notices import render_confirmation

    mail = render_confirmation(web.config, web.config.secret_key(), sub)
    for part in (mail.subject, mail.text, mail.html):
        _clean(part)


async def test_a_bounced_address_gets_no_mail_from_the_form_and_the_same_page(web: Web) -> None:
    await _subscribe_and_confirm(web, "gone@example.org")
    (row,) = _rows(web.engine)
    repo.set_status(web.engine, row.id, SubscriberStatus.BOUNCED, now=NOW)
    web.clock.advance(days=30)
    known = await web.subscribe("gone@example.org", "agents")
    new = await web.subscribe("new@example.org", "agents")
    assert known.status_code == new.status_code == 200 and known.content == new.content
    assert {m.recipients[0] for m in web.new_mail()} == {"new@example.org"}
    assert repo.get_subscriber(web.engine, row.id).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


async def test_an_unsubscribed_address_gets_at_most_one_confirmation_a_week(web: Web) -> None:
    links = await _subscribe_and_confirm(web, "ann@example.org")
    assert (await web.client.post(links["u"])).status_code == 200
    web.clock.advance(days=1)
    assert (await web.subscribe("ann@example.org", "agents")).status_code == 200
    assert web.new_mail() == [], "a confirmation went out a day ago: nothing within the week"
    assert _rows(web.engine)[0].status == "unsubscribed", "and nobody can put the address back to pending"
    web.clock.advance(days=7)
    assert (await web.subscribe("ann@example.org", "agents")).status_code == 200
    (again,) = web.new_mail()
    assert "confirm" in links_in(again)
    for _ in range(3):  # the anti-bombing hour passes, the week does not
        web.clock.advance(hours=2)
        await web.subscribe("ann@example.org", "agents OR diffusion")
    assert web.new_mail() == []
    confirmed = await web.confirm(links_in(again)["confirm"])  # the page's button (issue 13b)
    assert confirmed.status_code == 200 and _rows(web.engine)[0].status == "active"


async def test_the_manage_page_says_too_much_text_for_over_12000_characters(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    answer = await web.save_manage(links["manage"], rules="diffusion " * 1300)
    assert answer.status_code == 400
    assert "too much text" in answer.text and "Write at least one rule" not in answer.text


async def test_a_box_of_bad_rules_shows_the_first_20_problems_and_counts_the_rest(web: Web) -> None:
    bad = "\n".join(f"title:( broken {i}" for i in range(45))
    answer = await web.client.get("/preview", params={"rules": bad})
    assert answer.text.count('class="problem"') == 21
    assert "and 26 more lines with problems" in answer.text  # 45 bad lines and "at most 20 rules"
    big = "\n".join("(" * 240 for _ in range(48))  # 12 KB of bad rules
    page = await web.client.get("/preview", params={"rules": big})
    assert len(page.content) < 60_000, "the page stays small whatever the box holds"
