"""The send-time fields of the subscribe form and the manage page, in-process (httpx ASGI, real SMTP sink)."""

from __future__ import annotations

import re

from web_helpers import MANAGE_FORM, Web, links_in

from digest.store import subscribers as repo


async def test_the_front_page_offers_a_send_time_and_the_schedule_zone_without_javascript(web: Web) -> None:
    html = (await web.client.get("/")).text
    assert '<label for="send_time">' in html and '<label for="timezone">' in html
    assert '<option value="" selected>With everyone' in html
    assert '<option value="07:15">07:15</option>' in html and '<option value="07:10">' not in html
    # No JavaScript: the server's default is the [schedule] zone; app.js may pre-select the browser's.
    zone = web.config.schedule.timezone
    assert f'<option value="{zone}" selected>{zone}</option>' in html
    assert 'id="timezone" name="timezone" data-prefill="1"' in html
    assert "<script>" not in html


async def test_a_new_subscription_keeps_its_send_time_and_zone(web: Web) -> None:
    answer = await web.subscribe("ann@example.org", send_time="07:30", timezone="Asia/Tokyo")
    assert answer.status_code == 200
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and (sub.send_time, sub.timezone) == ("07:30", "Asia/Tokyo")


async def test_a_bad_send_time_or_zone_is_refused_with_the_form_kept(web: Web) -> None:
    for fields, words in [
        ({"send_time": "07:10", "timezone": "Asia/Tokyo"}, "quarter hour"),
        ({"send_time": "07:15", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ]:
        answer = await web.subscribe("ann@example.org", **fields)
        assert answer.status_code == 400 and words in answer.text
        assert 'value="ann@example.org"' in answer.text and 'data-prefill="0"' in answer.text
    assert repo.find_subscriber(web.engine, "ann@example.org") is None


async def test_the_form_cannot_change_the_send_time_of_someone_already_subscribed(web: Web) -> None:
    await web.subscribe("ann@example.org")
    (confirmation,) = web.new_mail()
    assert (await web.confirm(links_in(confirmation)["confirm"])).status_code == 200
    await web.subscribe("ann@example.org", send_time="03:00", timezone="Asia/Tokyo")  # a stranger
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and sub.status == "active" and sub.send_time is None


async def test_the_manage_page_edits_and_clears_the_send_time(web: Web) -> None:
    await web.subscribe("ann@example.org")
    (confirmation,) = web.new_mail()
    await web.confirm(links_in(confirmation)["confirm"])
    (welcome,) = web.new_mail()
    manage = links_in(welcome)["manage"]
    page = await web.client.get(manage)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {**MANAGE_FORM, "csrf_token": token}

    saved = await web.client.post(manage, data={**form, "send_time": "06:45", "timezone": "Europe/Berlin"})
    assert (
        saved.status_code == 200
        and "Saved." in saved.text
        and "every day at 06:45 (Europe/Berlin)" in saved.text
    )
    assert (
        '<option value="06:45" selected>' in saved.text
        and '<option value="Europe/Berlin" selected>' in saved.text
    )
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and (sub.send_time, sub.timezone) == ("06:45", "Europe/Berlin")

    bad = await web.client.post(manage, data={**form, "send_time": "6:50", "timezone": "Europe/Berlin"})
    assert bad.status_code == 400 and "quarter hour" in bad.text
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and sub.send_time == "06:45", "a refused form changes nothing"

    cleared = await web.client.post(manage, data={**form, "send_time": "", "timezone": "Europe/Berlin"})
    assert cleared.status_code == 200
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and (sub.send_time, sub.timezone) == (None, None)
