"""Every route of the web app, in-process (httpx ASGI transport), with mail through a real SMTP server."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from freezegun import freeze_time
from web_helpers import BASE, NOW, SECRET, Web, links_in, mail_text

from digest.models import Subscriber, SubscriberStatus
from digest.store import signup, subscriber_rows
from digest.store import subscribers as repo
from digest.store.tables import alert, run, subscriber
from digest.tokens import make_token


def _rows(engine: sa.Engine) -> list[sa.Row[object]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(subscriber).order_by(subscriber.c.id)))


def _managed_ops(engine: sa.Engine) -> Subscriber:
    """ops@example.org, active and managed by the config file."""
    return repo.add_subscriber(
        engine, "ops@example.org", ["agents"], now=NOW, status=SubscriberStatus.ACTIVE, managed_by_config=True
    )


async def _subscribe_and_confirm(
    web: Web, email: str = "ann@example.org", rules: str = "diffusion"
) -> dict[str, str]:
    assert (await web.subscribe(email, rules)).status_code == 200
    (confirmation,) = web.new_mail()
    confirmed = await web.confirm(links_in(confirmation)["confirm"])
    assert confirmed.status_code == 200
    (welcome,) = web.new_mail()
    return links_in(welcome)


async def test_the_front_page_is_an_accessible_form_with_safe_headers(web: Web) -> None:
    page = await web.client.get("/")
    assert page.status_code == 200
    html = page.text
    for field in ("email", "rules", "name"):
        assert f'<label for="{field}">' in html and f'id="{field}" name="{field}"' in html
    assert '<script src="/static/app.js" defer></script>' in html
    assert "<script>" not in html  # no inline script: the CSP forbids them
    assert page.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "digest_csrf=" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    css = await web.client.get("/static/style.css")
    js = await web.client.get("/static/app.js")
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css") and js.headers["content-type"].startswith(
        "text/javascript"
    )
    assert (await web.client.get("/static/../app.py")).status_code == 404


async def test_subscribing_stores_a_pending_subscriber_with_consent_and_mails_a_confirmation(
    web: Web,
) -> None:
    answer = await web.subscribe(" Ann@Example.org ", "diffusion\n\ntitle:agents\n", name="Ann", **{"x": "1"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    (row,) = _rows(web.engine)
    assert (row.email, row.status, row.name) == ("ann@example.org", "pending", "Ann")
    assert row.consent_source == "web" and row.consent_ip == "192.0.2.10"
    assert row.consent_user_agent.startswith("python-httpx")
    assert row.consent_form == {
        "email": "ann@example.org",
        "name": "Ann",
        "rules": ["diffusion", "title:agents"],
        "page": "/subscribe",
    }
    (mail,) = web.new_mail()
    assert mail.recipients == ("ann@example.org",) and mail.sender == "digest@example.org"
    message = mail.message
    assert message["Subject"] == "Confirm your Paper digest subscription"
    assert message["List-Unsubscribe"].startswith(f"<{BASE}/u/")
    text = mail_text(mail)
    assert "Hi Ann," in text and "  - title:agents" in text
    assert set(links_in(mail)) == {"confirm", "u"}


async def test_the_answer_is_identical_whatever_the_address_is(web: Web) -> None:
    # An outsider must not learn whether an address is subscribed: same status, headers and bytes.
    await _subscribe_and_confirm(web, "active@example.org")
    await web.subscribe("pending@example.org")
    web.new_mail()
    gone = await _subscribe_and_confirm(web, "gone@example.org")
    assert (await web.client.post(gone["u"])).status_code == 200
    _managed_ops(web.engine)
    web.new_mail()
    web.clock.advance(days=8)  # an unsubscribed address gets one confirmation a week at most
    answers = [
        await web.subscribe(email)
        for email in (
            "new@example.org",
            "pending@example.org",
            "active@example.org",
            "gone@example.org",
            "ops@example.org",
            "new@example.org",  # again within the hour: no mail, same page
        )
    ]
    first = answers[0]
    for other in answers[1:]:
        assert other.status_code == first.status_code == 200
        assert other.content == first.content
        assert sorted(k for k in other.headers if k != "date") == sorted(
            k for k in first.headers if k != "date"
        )
        assert "set-cookie" not in other.headers
    # Only the owners learn anything, by mail: a confirmation for the new, pending and unsubscribed
    # addresses, a "you are already subscribed" reminder for the active one; nothing for the rest.
    got = {(m.recipients[0], m.message["Subject"]) for m in web.new_mail()}
    assert got == {
        ("new@example.org", "Confirm your Paper digest subscription"),
        ("pending@example.org", "Confirm your Paper digest subscription"),
        ("gone@example.org", "Confirm your Paper digest subscription"),
        ("active@example.org", "Your Paper digest subscription"),
    }


async def test_a_stranger_cannot_change_the_rules_of_an_active_subscriber(web: Web) -> None:
    await _subscribe_and_confirm(web, "ann@example.org", "diffusion")
    await web.subscribe("ann@example.org", "crypto scam")
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and [r.query for r in sub.rules] == ["diffusion"]


@pytest.mark.parametrize("case", ["no cookie", "wrong token", "token of another browser", "no token"])
async def test_a_subscribe_without_a_matching_csrf_token_changes_nothing(web: Web, case: str) -> None:
    token = await web.form_token()
    data = {"email": "ann@example.org", "rules": "diffusion", "csrf_token": token}
    if case == "no cookie":
        web.client.cookies.clear()
    elif case == "wrong token":
        data["csrf_token"] = token[:-4] + "AAAA"
    elif case == "token of another browser":
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web.app), base_url=BASE) as other:
            data["csrf_token"] = re.search(
                r'name="csrf_token" value="([^"]+)"', (await other.get("/")).text
            ).group(1)  # type: ignore[union-attr]
    else:
        del data["csrf_token"]
    answer = await web.client.post("/subscribe", data=data)
    assert answer.status_code == 403 and "The form had expired" in answer.text
    assert 'value="ann@example.org"' in answer.text  # what was typed is kept
    assert _rows(web.engine) == [] and web.new_mail() == []


async def test_the_honeypot_answers_the_same_page_and_stores_nothing(web: Web) -> None:
    real = await web.subscribe("ann@example.org")
    web.new_mail()
    bot = await web.subscribe("bob@example.org", website="http://spam.example")
    assert bot.status_code == 200 and bot.content == real.content
    assert [r.email for r in _rows(web.engine)] == ["ann@example.org"] and web.new_mail() == []


async def test_one_network_cannot_send_more_than_the_limit(web_factory: object) -> None:
    web = await web_factory(subscribe_limit=(2, 3600.0))  # type: ignore[operator]
    assert (await web.subscribe("a@example.org")).status_code == 200
    assert (await web.subscribe("b@example.org")).status_code == 200
    blocked = await web.subscribe("c@example.org")
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "c@example.org" not in [r.email for r in _rows(web.engine)]
    other = await web_factory(ip="198.51.100.7", subscribe_limit=(2, 3600.0))  # type: ignore[operator]
    assert (await other.subscribe("c@example.org")).status_code == 200


async def test_an_address_gets_at_most_one_confirmation_mail_per_hour(web: Web) -> None:
    for _ in range(3):
        assert (await web.subscribe("ann@example.org")).status_code == 200
    assert len(web.new_mail()) == 1
    web.clock.advance(minutes=59)
    await web.subscribe("ann@example.org")
    assert web.new_mail() == []
    web.clock.advance(minutes=2)
    await web.subscribe("ann@example.org", "agents")
    (again,) = web.new_mail()
    assert "  - agents" in mail_text(again)  # the newest form is what gets confirmed


async def test_bad_addresses_and_rules_are_shown_inline_and_nothing_is_stored(web: Web) -> None:
    answer = await web.subscribe(
        "ann@example.org\r\nBcc: x@example.org", "diffusion\ntitle:(agent OR\nfoo:bar"
    )
    assert answer.status_code == 400
    html = answer.text
    assert 'id="email-error"' in html and 'aria-invalid="true"' in html
    # The place in words (the caret under the rule is for the eye only), in the field's description too.
    assert "Line 2, character 14: " in html and "Line 3, character 1: " in html
    assert 'aria-describedby="rules-error rules-help"' in html
    pre = re.findall(r"<pre>(.*?)</pre>", html, re.S)
    assert pre and pre[0].splitlines()[0] == "title:(agent OR"
    assert pre[0].splitlines()[1] == '<span aria-hidden="true">             ^</span>'
    assert "<title>Error: Subscribe" in html and 'href="#rules">Rules: Line 2, character 14: ' in html
    assert _rows(web.engine) == [] and web.new_mail() == []
    empty = await web.subscribe("ann@example.org", "  \n ")
    assert empty.status_code == 400 and "Write at least one rule." in empty.text


async def test_the_preview_lists_what_the_rules_matched_this_week(web: Web) -> None:
    token = await web.form_token()
    page = await web.client.post(
        "/preview", data={"email": "ann@example.org", "rules": "diffusion", "csrf_token": token}
    )
    assert page.status_code == 200
    assert 'value="ann@example.org"' in page.text and ">diffusion</textarea>" in page.text
    assert "Video Diffusion Models at Scale" in page.text
    assert "Flow Matching for Images &lt;script&gt;" in page.text  # scraped text is escaped
    assert "An Old Diffusion Paper" not in page.text  # older than 7 days
    assert page.text.index("Video Diffusion") < page.text.index("Flow Matching")  # most upvoted first
    assert "matched: diffusion in" in page.text
    fragment = await web.client.get("/preview", params={"rules": '"language model"'})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "Agents that Plan" in fragment.text and "Video Diffusion" not in fragment.text
    bad = await web.client.get("/preview", params={"rules": "agents AND"})
    # The caret under the problem, hidden from screen readers, who get the place in words.
    assert '<pre>agents AND\n<span aria-hidden="true">       ^</span></pre>' in bad.text
    assert "Line 1, character 8: " in bad.text
    assert _rows(web.engine) == []


async def test_previews_are_limited_per_network(web_factory: object) -> None:
    web = await web_factory(preview_limit=(3, 60.0))  # type: ignore[operator]
    codes = [(await web.client.get("/preview", params={"rules": "diffusion"})).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


async def test_confirming_activates_once_and_sends_one_welcome_mail(web: Web) -> None:
    await web.subscribe("ann@example.org", "diffusion")
    (confirmation,) = web.new_mail()
    link = links_in(confirmation)["confirm"]
    first = await web.confirm(link)
    assert first.status_code == 200 and "You are subscribed" in first.text
    assert _rows(web.engine)[0].status == "active"
    (welcome,) = web.new_mail()
    assert welcome.message["Subject"] == "Welcome to Paper digest"
    assert set(links_in(welcome)) == {"manage", "u"}
    again = await web.confirm(link)
    assert again.status_code == 200 and "already subscribed" in again.text
    assert (await web.client.post(link, data={"csrf_token": await web.form_token()})).status_code == 200
    assert web.new_mail() == []


async def test_an_expired_confirmation_link_changes_nothing(web: Web) -> None:
    sub, _ = signup.request_subscription(web.engine, "ann@example.org", ["diffusion"], now=NOW)
    with freeze_time(datetime.now(UTC) - timedelta(days=3, minutes=1)):
        old = make_token(SECRET, "confirm", sub.id, 0)
    answer = await web.client.get(f"/confirm/{old}")
    assert answer.status_code == 410 and "expired" in answer.text
    assert _rows(web.engine)[0].status == "pending" and web.new_mail() == []


async def test_forged_damaged_and_misused_tokens_get_a_4xx_page_and_change_nothing(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None
    manage_token = links["manage"].rsplit("/", 1)[1]
    forged = make_token("another-secret-key-another-secret-key-0000", "unsubscribe", sub.id, 0)
    damaged = manage_token[:-3] + ("AAA" if not manage_token.endswith("AAA") else "BBB")
    other_purpose = manage_token  # a manage token is not an unsubscribe token
    before = _rows(web.engine)
    token = await web.form_token()
    for method, path in [
        ("GET", f"/u/{forged}"),
        ("POST", f"/u/{forged}"),
        ("POST", f"/u/{other_purpose}"),
        ("GET", f"/confirm/{other_purpose}"),
        ("GET", f"/manage/{damaged}"),
        ("POST", f"/manage/{damaged}"),
        ("GET", "/manage/" + "x" * 300),
        ("POST", "/u/not-a-token"),
    ]:
        data = (
            {"action": "pause", "csrf_token": token, "List-Unsubscribe": "One-Click"}
            if method == "POST"
            else None
        )
        answer = await web.client.request(method, path, data=data)
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
        assert "not valid" in answer.text
    assert _rows(web.engine) == before and web.new_mail() == []


async def test_the_unsubscribe_page_never_changes_state_on_get(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    for _ in range(3):  # link scanners prefetch
        page = await web.client.get(links["u"])
        assert (
            page.status_code == 200
            and '<button type="submit" class="primary">Unsubscribe</button>' in page.text
        )
    assert _rows(web.engine)[0].status == "active"


@pytest.mark.parametrize("body", ["form", "multipart", "page button"])
async def test_one_click_unsubscribe_is_immediate_idempotent_and_never_a_redirect(
    web: Web, body: str
) -> None:
    links = await _subscribe_and_confirm(web)
    # A mail provider's POST carries no cookie and no CSRF token.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web.app), base_url=BASE) as provider:
        for attempt in range(2):
            if body == "form":
                answer = await provider.post(links["u"], data={"List-Unsubscribe": "One-Click"})
            elif body == "multipart":
                answer = await provider.post(links["u"], files={"List-Unsubscribe": (None, "One-Click")})
                assert answer.request.headers["content-type"].startswith("multipart/form-data")
            else:
                page = await provider.get(links["u"])
                button = '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                assert (button in page.text) == (attempt == 0)
                answer = await provider.post(
                    links["u"],
                    content=b"List-Unsubscribe=One-Click",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
            assert answer.status_code == 200 and "You are unsubscribed" in answer.text
            assert _rows(web.engine)[0].status == "unsubscribed"
            web.clock.advance(hours=1)
    stamp = _rows(web.engine)[0].unsubscribed_at
    assert subscriber_rows.read_time(stamp) == NOW  # the second click changed nothing


async def test_the_manage_page_edits_rules_schedule_and_pauses(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    page = await web.client.get(links["manage"])
    assert page.status_code == 200 and ">diffusion</textarea>" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    bad = await web.save_manage(links["manage"], token, rules="agents\n-video")
    assert bad.status_code == 400 and "Line 2, character 1: " in bad.text and "<pre>-video\n" in bad.text
    assert "<title>Error: Your subscription" in bad.text and 'href="#rules">Rules: Line 2' in bad.text
    assert ">agents\n-video</textarea>" in bad.text  # the edit is kept for fixing
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and [r.query for r in sub.rules] == ["diffusion"]
    saved = await web.save_manage(
        links["manage"], token, rules="agents\nrobot*", cadence="weekly", weekday="4"
    )
    assert saved.status_code == 200 and "Saved." in saved.text and "every Friday" in saved.text
    sub = repo.find_subscriber(web.engine, "ann@example.org")
    assert sub is not None and [r.query for r in sub.rules] == ["agents", "robot*"]
    assert (sub.cadence.value, sub.weekday) == ("weekly", 4)
    paused = await web.client.post(links["manage"], data={"action": "pause", "csrf_token": token})
    assert paused.status_code == 200 and "Resume the digest" in paused.text
    assert _rows(web.engine)[0].status == "paused"
    resumed = await web.client.post(links["manage"], data={"action": "resume", "csrf_token": token})
    assert resumed.status_code == 200 and _rows(web.engine)[0].status == "active"


async def test_the_manage_form_needs_its_csrf_token(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    await web.client.get(links["manage"])
    answer = await web.client.post(links["manage"], data={"action": "pause", "csrf_token": "forged"})
    assert answer.status_code == 403 and "Nothing was changed" in answer.text
    assert _rows(web.engine)[0].status == "active"


async def test_delete_all_my_data_needs_the_box_ticked_then_kills_every_link(web: Web) -> None:
    links = await _subscribe_and_confirm(web)
    token = await web.form_token(links["manage"])
    unticked = await web.client.post(links["manage"], data={"action": "delete", "csrf_token": token})
    assert unticked.status_code == 400 and _rows(web.engine)[0].email == "ann@example.org"
    deleted = await web.client.post(
        links["manage"], data={"action": "delete", "confirm_delete": "yes", "csrf_token": token}
    )
    assert deleted.status_code == 200 and "Your data is deleted" in deleted.text
    (row,) = _rows(web.engine)
    assert "ann" not in row.email and row.status == "unsubscribed" and row.consent_at is not None
    for path in (links["manage"], links["u"]):
        assert (await web.client.get(path)).status_code == 404
    assert (await web.client.post(links["u"])).status_code == 404


async def test_a_config_managed_subscriber_gets_a_polite_page_but_can_unsubscribe(web: Web) -> None:
    sub = _managed_ops(web.engine)
    manage = f"/manage/{make_token(SECRET, 'manage', sub.id, 0)}"
    page = await web.client.get(manage)
    assert (
        page.status_code == 200 and "managed by the operator" in page.text and "ops@example.org" in page.text
    )
    assert "<textarea" not in page.text
    token = await web.form_token()
    refused = await web.client.post(manage, data={"action": "save", "rules": "robots", "csrf_token": token})
    assert refused.status_code == 403 and "managed by the operator" in refused.text
    assert [r.query for r in repo.get_subscriber(web.engine, sub.id).rules] == ["agents"]  # type: ignore[union-attr]
    gone = await web.client.post(f"/u/{make_token(SECRET, 'unsubscribe', sub.id, 0)}")
    assert gone.status_code == 200 and _rows(web.engine)[0].status == "unsubscribed"


async def test_healthz_reports_the_last_run_and_recent_alerts(web: Web) -> None:
    empty = await web.client.get("/healthz")
    assert empty.status_code == 200 and empty.json()["last_run"] is None and empty.json()["status"] == "ok"
    with web.engine.begin() as conn:
        conn.execute(
            sa.insert(run).values(
                run_date=date(2026, 2, 28), status="done", started_at=NOW - timedelta(days=2)
            )
        )
        conn.execute(
            sa.insert(run).values(
                run_date=date(2026, 3, 1),
                status="done",
                started_at=NOW - timedelta(hours=3),
                finished_at=NOW - timedelta(hours=2),
                report={"sent": 12, "failed": 0, "seconds": 1.5, "problems": []},
            )
        )
        conn.execute(
            sa.insert(alert).values(
                day=date(2026, 2, 20), problem="old", detail="x", created_at=NOW - timedelta(days=10)
            )
        )
    ok = (await web.client.get("/healthz")).json()
    assert ok["status"] == "ok" and ok["alert"] is None
    assert ok["last_run"]["date"] == "2026-03-01" and ok["last_run"]["counts"] == {"sent": 12, "failed": 0}
    assert ok["last_run"]["finished_at"].startswith("2026-03-02T07:30:00")
    with web.engine.begin() as conn:
        conn.execute(
            sa.insert(alert).values(
                day=date(2026, 3, 2),
                problem="source",
                detail="HF is down",
                created_at=NOW - timedelta(hours=1),
            )
        )
    bad = (await web.client.get("/healthz")).json()
    assert bad["status"] == "alert" and bad["alert"] == [{"day": "2026-03-02", "problem": "source"}]


SECRET_DETAIL = "535 5.7.8 authentication failed for user ann on smtp.internal.example"


async def _failed_run_with_an_smtp_alert(web: Web) -> None:
    with web.engine.begin() as conn:
        conn.execute(
            sa.insert(run).values(
                run_date=date(2026, 3, 2),
                status="failed",
                started_at=NOW - timedelta(hours=1),
                finished_at=NOW - timedelta(minutes=50),
                error=f"SMTP: {SECRET_DETAIL}",
                report={"sent": 0, "failed": 3, "error": SECRET_DETAIL, "problems": [SECRET_DETAIL]},
            )
        )
        conn.execute(
            sa.insert(alert).values(
                day=date(2026, 3, 2),
                problem="smtp",
                detail=SECRET_DETAIL,
                created_at=NOW - timedelta(minutes=50),
            )
        )


async def test_public_healthz_shows_states_and_counts_but_no_error_text(web: Web) -> None:
    await _failed_run_with_an_smtp_alert(web)
    answer = await web.client.get("/healthz")
    assert answer.status_code == 503  # the last run failed
    assert answer.json() == {
        "status": "unhealthy",
        "last_run": {
            "date": "2026-03-02",
            "status": "failed",
            "finished_at": answer.json()["last_run"]["finished_at"],
            "counts": {"sent": 0, "failed": 3},
        },
        "alert": [{"day": "2026-03-02", "problem": "smtp"}],
    }
    for secret in ("smtp.internal.example", "ann", "535"):
        assert secret not in answer.text


async def test_healthz_gives_details_only_to_this_machine_and_not_through_a_proxy(
    web_factory: object,
) -> None:
    local = await web_factory(ip="127.0.0.1")  # type: ignore[operator]
    await _failed_run_with_an_smtp_alert(local)
    mine = await local.client.get("/healthz")
    assert mine.status_code == 503
    assert mine.json()["last_run"]["error"] == f"SMTP: {SECRET_DETAIL}"
    assert mine.json()["alert"][0]["detail"] == SECRET_DETAIL
    # A reverse proxy on the same machine connects from 127.0.0.1 too: what it forwards is public.
    proxied = await local.client.get("/healthz", headers={"x-forwarded-for": "203.0.113.9"})
    assert proxied.status_code == 503 and SECRET_DETAIL not in proxied.text
    ipv6 = await web_factory(ip="::1")  # type: ignore[operator]
    assert SECRET_DETAIL in (await ipv6.client.get("/healthz")).text


async def test_a_dead_smtp_server_is_logged_and_the_visitor_sees_the_same_page(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    web.sink.stop()
    good = await web.subscribe("ann@example.org")
    assert good.status_code == 200 and "Check your inbox" in good.text
    assert _rows(web.engine)[0].status == "pending"
    assert any("confirmation mail" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


async def test_unknown_pages_are_friendly_404s(web: Web) -> None:
    answer = await web.client.get("/nope")
    assert answer.status_code == 404 and "Page not found" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


@pytest.mark.postgres
async def test_subscribe_confirm_and_unsubscribe_work_on_postgresql(
    web_factory: object, postgres_url: str
) -> None:
    from web_helpers import week_of_papers

    from digest.store import db
    from digest.store.papers import upsert_papers

    engine = db.open_database(postgres_url)
    try:
        upsert_papers(engine, week_of_papers(NOW.date()), NOW)
        web = await web_factory(engine=engine)  # type: ignore[operator]
        preview = await web.client.get("/preview", params={"rules": "diffusion"})
        assert "Video Diffusion Models at Scale" in preview.text
        links = await _subscribe_and_confirm(web)
        assert _rows(engine)[0].status == "active"
        assert (
            await web.client.post(links["u"], files={"List-Unsubscribe": (None, "One-Click")})
        ).status_code == 200
        assert _rows(engine)[0].status == "unsubscribed"
    finally:
        engine.dispose()


async def test_new_rules_for_a_pending_address_kill_the_earlier_confirmation_link(web: Web) -> None:
    await web.subscribe("ann@example.org", "diffusion")
    (owners,) = web.new_mail()
    # Within the hour, a stranger's form changes nothing: the owner's link confirms what the owner asked.
    await web.subscribe("ann@example.org", "crypto scam")
    assert web.new_mail() == []
    assert [r.query for r in repo.find_subscriber(web.engine, "ann@example.org").rules] == ["diffusion"]  # type: ignore[union-attr]
    # Later, the stranger's rules are stored and mailed with a new link; the owner's old link is dead.
    web.clock.advance(hours=2)
    await web.subscribe("ann@example.org", "crypto scam")
    (fresh,) = web.new_mail()
    assert "  - crypto scam" in mail_text(fresh)
    old = await web.client.get(links_in(owners)["confirm"])
    assert old.status_code == 410 and "This link was replaced" in old.text
    assert _rows(web.engine)[0].status == "pending" and web.new_mail() == []
    new = await web.confirm(links_in(fresh)["confirm"])
    assert new.status_code == 200 and _rows(web.engine)[0].status == "active"


async def test_an_address_gets_at_most_three_form_mails_a_day(web: Web) -> None:
    sent = []
    for _ in range(5):
        await web.subscribe("ann@example.org")
        sent.append(len(web.new_mail()))
        web.clock.advance(minutes=61)
    assert sent == [1, 1, 1, 0, 0]
    web.clock.advance(hours=20)  # a day after the first mail
    await web.subscribe("ann@example.org")
    assert len(web.new_mail()) == 1


@pytest.fixture
def proxy_warning_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from digest.web import site as site_module

    monkeypatch.setattr(site_module, "_proxy_warned", threading.Event())


@pytest.mark.usefixtures("proxy_warning_not_given")
async def test_requests_through_an_untrusted_proxy_log_one_warning_per_process(
    web_factory: object, caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    from web_helpers import make_config

    direct = await web_factory()  # type: ignore[operator]
    await direct.subscribe("ann@example.org")
    await direct.client.get("/preview", params={"rules": "diffusion"})
    assert not [r for r in caplog.records if "trust_proxy" in r.getMessage()]

    proxied = {"x-forwarded-for": "203.0.113.9"}
    trusting = await web_factory(  # type: ignore[operator]
        config=make_config(tmp_path, direct.sink.port, web={"base_url": BASE, "trust_proxy": True})  # type: ignore[arg-type]
    )
    await trusting.client.get("/", headers=proxied)
    await trusting.client.get("/preview", params={"rules": "diffusion"}, headers=proxied)
    assert not [r for r in caplog.records if "trust_proxy" in r.getMessage()]

    await direct.client.get("/", headers=proxied)
    await direct.client.get("/preview", params={"rules": "diffusion"}, headers=proxied)
    other = await web_factory(ip="198.51.100.7")  # type: ignore[operator]
    await other.client.get("/preview", params={"rules": "agents"}, headers=proxied)
    warnings = [r for r in caplog.records if "trust_proxy" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert warnings[0].getMessage() == (
        "requests carry X-Forwarded-For but [web] trust_proxy is false: per-IP limits apply to the proxy's "
        "address; set trust_proxy = true behind a reverse proxy"
    )


async def test_pages_link_to_the_manage_page_on_the_site_they_were_served_from(web: Web) -> None:
    await web.subscribe("ann@example.org")
    (confirmation,) = web.new_mail()
    confirmed = (await web.confirm(links_in(confirmation)["confirm"])).text
    (welcome,) = web.new_mail()
    links = links_in(welcome)
    pages = [
        confirmed,
        (await web.client.get(links_in(confirmation)["confirm"])).text,  # "already subscribed"
        (await web.client.get(links["u"])).text,
        (await web.client.post(links["u"])).text,
    ]
    for page in pages:
        targets = re.findall(r'(?:href|action|src)="([^"]*)"', page)
        # The same manage link: id and version agree; its timestamp is the second each page signed it in.
        same_link = re.escape(links["manage"].rsplit(".", 2)[0]) + r'\.[^".]+\.[^".]+"'
        assert re.search(r'href="' + same_link, page), page
        # Like /static and the form actions: nothing on our own site is linked through [web] base_url.
        assert not [t for t in targets if t.startswith((BASE, "//"))], targets
