"""Errors after a submit, as the server renders them (no browser): "Error:" in the title, a summary that takes
the focus and links each error to its field, and the field marked invalid and described by its error first."""

from __future__ import annotations

import re

from test_web_routes import _subscribe_and_confirm
from web_helpers import MANAGE_FORM, Web


def _summary_links(html: str) -> list[tuple[str, str]]:
    summary = re.search(
        r'<div class="error-summary" id="error-summary" tabindex="-1" autofocus(.*?)</div>', html, re.S
    )
    assert summary, "no error summary that takes the focus"
    return re.findall(r'<a href="#([a-z-]+)">([^<]+)</a>', summary.group(1))


async def test_manage_errors_link_to_their_field_and_mark_it(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    page = await web.client.get(links["manage"])
    assert "<title>Your subscription" in page.text and "error-summary" not in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {**MANAGE_FORM, "csrf_token": token}

    empty = await web.client.post(links["manage"], data={**form, "rules": "  "})
    assert empty.status_code == 400 and "<title>Error: Your subscription" in empty.text
    assert _summary_links(empty.text) == [("rules", "Write at least one rule.")]
    assert re.search(
        r'<textarea id="rules"[^>]* aria-invalid="true" aria-describedby="rules-error"', empty.text
    )
    assert (
        '<p class="error" id="rules-error"><span class="visually-hidden">Error: </span>Write at least'
        in empty.text
    )

    cadence = await web.client.post(links["manage"], data={**form, "cadence": "hourly"})
    assert cadence.status_code == 400 and "<title>Error: " in cadence.text
    assert _summary_links(cadence.text) == [
        ("cadence-daily", "Choose daily or weekly and a day of the week.")
    ]
    assert 'id="cadence-daily"' in cadence.text and 'aria-describedby="cadence-error"' in cadence.text

    delete = await web.client.post(links["manage"], data={"action": "delete", "csrf_token": token})
    assert delete.status_code == 400
    assert _summary_links(delete.text) == [
        ("confirm-delete", "Tick the box to confirm that everything should be deleted.")
    ]
    assert re.search(
        r'id="confirm-delete"[^>]* aria-invalid="true" aria-describedby="confirm-delete-error"', delete.text
    )

    stale = await web.client.post(links["manage"], data={**form, "csrf_token": "forged"})
    assert stale.status_code == 403 and "<title>Error: " in stale.text
    assert _summary_links(stale.text) == []  # about the whole form: said in the summary, linked to no field
    assert "The form had expired" in stale.text


async def test_subscribe_errors_are_summarised_in_field_order_and_said_before_the_help(web: Web) -> None:
    answer = await web.subscribe("nobody", "diffusion\n\n  agents AND", name="x" * 101)
    assert answer.status_code == 400 and "<title>Error: Subscribe" in answer.text
    targets = [target for target, _ in _summary_links(answer.text)]
    assert targets == ["email", "rules", "name"]
    assert dict(_summary_links(answer.text))["rules"].startswith("Rules: Line 3, character 10: AND needs")
    assert 'aria-describedby="rules-error rules-help"' in answer.text
    assert answer.text.index('id="rules-error"') < answer.text.index('<textarea id="rules"')
