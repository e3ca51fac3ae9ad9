"""The confirmation link is fetched by mail scanners (Outlook Safe Links, Gmail, gateways): only the
page's button confirms, never opening the link."""

from __future__ import annotations

import sqlalchemy as sa
from web_helpers import CSRF_FIELD, Web, links_in

from digest.store.tables import subscriber

SCANNERS = {
    "safe links": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36 Edg/120.0 (Microsoft Safe Links)",
    "gmail": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "barracuda": "Barracuda Sentinel (EE)",
}


def _status(web: Web) -> str:
    with web.engine.connect() as conn:
        return str(conn.execute(sa.select(subscriber.c.status)).scalar_one())


async def test_opening_the_confirmation_link_changes_nothing_whoever_opens_it(web: Web) -> None:
    await web.subscribe("ann@example.org", "diffusion")
    (confirmation,) = web.new_mail()
    link = links_in(confirmation)["confirm"]
    for agent in SCANNERS.values():
        page = await web.client.get(link, headers={"user-agent": agent})
        assert page.status_code == 200
        assert (
            '<button type="submit" id="confirm" class="primary">Confirm my subscription</button>' in page.text
        )
        assert 'method="post"' in page.text and CSRF_FIELD.search(page.text)
        head = await web.client.head(link, headers={"user-agent": agent})
        assert head.status_code in (200, 405)
    assert _status(web) == "pending" and web.new_mail() == []


async def test_the_confirm_button_needs_the_pages_csrf_token(web: Web) -> None:
    await web.subscribe("ann@example.org", "diffusion")
    (confirmation,) = web.new_mail()
    link = links_in(confirmation)["confirm"]
    forged = await web.client.post(link, data={"csrf_token": "not-the-token"})
    assert forged.status_code == 403 and "Confirm my subscription" in forged.text
    # Said like any form error: in the title and in the summary, linked to the button.
    assert "<title>Error: Confirm your subscription" in forged.text
    assert '<a href="#confirm">The form had expired' in forged.text
    assert _status(web) == "pending" and web.new_mail() == []
    done = await web.confirm(link)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert _status(web) == "active"
    assert [m.message["Subject"] for m in web.new_mail()] == ["Welcome to Paper digest"]


async def test_the_confirmation_mail_says_the_link_opens_a_page_with_a_button(web: Web) -> None:
    await web.subscribe("ann@example.org", "diffusion")
    (confirmation,) = web.new_mail()
    text = confirmation.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "press the button" in text
