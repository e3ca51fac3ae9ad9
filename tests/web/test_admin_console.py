"""The console's pages and actions in-process: dashboard, search, a subscriber's history, each action behind
its confirmation, refusals, the kill switch, and the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from admin_helpers import HASH_ENV, admin_config, password_hash, sign_in, token
from console_seed import add_delivery, add_run, set_status

from digest.models import SubscriberStatus
from digest.store import audit
from digest.store.settings import sending_pause
from digest.store.subscribers import Consent, add_subscriber
from digest.store.tables import delivery, subscriber


@pytest.fixture(autouse=True)
def _hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HASH_ENV, password_hash())


@pytest.fixture
async def admin(web_factory: Any, tmp_path: Path, sink: Any) -> Any:
    web = await web_factory(config=admin_config(tmp_path, sink.port))
    await sign_in(web)
    return web


def ada(web: Any, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> int:
    consent = Consent(
        at=web.clock(), source="web", ip="198.51.100.7", user_agent="Firefox", form={"rules": ["diffusion"]}
    )
    return add_subscriber(
        web.engine,
        "ada@example.org",
        ["diffusion", "title:agents"],
        now=web.clock(),
        status=status,
        consent=consent,
    ).id


async def post(web: Any, path: str, **data: str) -> Any:
    return await web.client.post(path, data={"csrf_token": await token(web), **data})


async def test_the_dashboard_shows_the_chart_runs_alerts_source_and_counts(admin: Any) -> None:
    sub = ada(admin)
    today = admin.clock().date()
    run_id = add_run(admin.engine, today, admin.clock())
    add_delivery(admin.engine, run_id, sub, "failed", admin.clock(), last_reply="550 5.1.1 no such user")
    page = await admin.client.get("/admin")
    assert page.status_code == 200
    html = page.text
    assert '<svg viewBox="0 0 480 230" role="img"' in html
    assert 'class="bar bar-failed"' in html and "1 failed" in html
    for name in ("sent", "failed", "uncertain", "bounced"):
        assert f'swatch-{name}"' in html  # the legend
    assert "From " in html and "Most failures and bounces on" in html  # the text alternative
    assert "Last good fetch" in html and "Papers per day" in html
    assert "default (07:00 UTC)" in html  # everybody on the schedule's time until send times exist
    assert 'href="/admin/subscribers?status=active">active</a></th><td>1</td>' in html
    assert " style=" not in html and "<script" not in html  # nothing the CSP would block
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_search_finds_by_address_and_rule_word(admin: Any) -> None:
    ada(admin)
    add_subscriber(
        admin.engine, "bob@example.org", ["zebrafish"], now=admin.clock(), status=SubscriberStatus.PAUSED
    )
    found = await admin.client.get("/admin/subscribers", params={"q": "ADA"})
    assert "ada@example.org" in found.text and "bob@example.org" not in found.text
    by_rule = await admin.client.get("/admin/subscribers", params={"rule": "zebra", "status": "paused"})
    assert "bob@example.org" in by_rule.text and "ada@example.org" not in by_rule.text
    assert "1 subscriber." in by_rule.text


async def test_a_subscribers_page_shows_rules_consent_and_every_delivery(admin: Any) -> None:
    sub = ada(admin)
    today = admin.clock().date()
    first = add_run(admin.engine, today.replace(day=1), admin.clock())
    second = add_run(admin.engine, today, admin.clock())
    add_delivery(
        admin.engine,
        first,
        sub,
        "sent",
        admin.clock(),
        last_reply="250 2.0.0 Ok: queued",
        paper_ids=["2602.00001", "2602.00003"],
    )
    add_delivery(
        admin.engine, second, sub, "failed", admin.clock(), last_reply="552 <script>alert(1)</script> too big"
    )
    page = await admin.client.get(f"/admin/subscribers/{sub}")
    html = page.text
    assert page.status_code == 200
    assert "<code>title:agents</code>" in html
    assert "198.51.100.7" in html and "Firefox" in html  # the consent record
    assert "250 2.0.0 Ok: queued" in html and "2602.00003" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "Deliveries (2)" in html
    assert "Bounces and complaints" in html and "None recorded." in html


async def test_an_action_asks_first_and_acts_only_when_confirmed(admin: Any) -> None:
    sub = ada(admin)
    ask = await post(admin, f"/admin/subscribers/{sub}/pause")
    assert ask.status_code == 200 and "Yes, pause" in ask.text
    with admin.engine.connect() as conn:
        assert conn.execute(sa.select(subscriber.c.status)).scalar() == "active"
    done = await post(admin, f"/admin/subscribers/{sub}/pause", confirm="yes")
    assert done.status_code == 200 and "Done: pause." in done.text
    with admin.engine.connect() as conn:
        assert conn.execute(sa.select(subscriber.c.status)).scalar() == "paused"
    (entry,) = [e for e in audit.recent(admin.engine) if e.action != "login"]
    assert (entry.actor, entry.action, entry.detail, entry.ip) == (
        "ops",
        "subscriber.pause",
        "was active",
        "192.0.2.10",
    )
    assert entry.target == f"subscriber {sub} <ada@example.org>"


async def test_a_bounced_address_is_reactivated_and_a_complained_one_is_refused(admin: Any) -> None:
    sub = ada(admin)
    set_status(admin.engine, sub, "bounced")
    page = await admin.client.get(f"/admin/subscribers/{sub}")
    assert "Reactivate…" in page.text and "Pause…" not in page.text
    done = await post(admin, f"/admin/subscribers/{sub}/reactivate", confirm="yes")
    assert "Done: reactivate." in done.text
    with admin.engine.connect() as conn:
        assert conn.execute(sa.select(subscriber.c.status, subscriber.c.hard_bounces)).one() == ("active", 0)

    set_status(admin.engine, sub, "complained")
    page = await admin.client.get(f"/admin/subscribers/{sub}")
    assert page.status_code == 200 and "complained" in page.text and "Reactivate…" not in page.text
    refused = await post(admin, f"/admin/subscribers/{sub}/reactivate", confirm="yes")
    assert refused.status_code == 409 and "A complaint is the person saying no" in refused.text
    with admin.engine.connect() as conn:
        assert conn.execute(sa.select(subscriber.c.status)).scalar() == "complained"
    assert audit.recent(admin.engine)[0].detail == "refused: complained"


async def test_resend_puts_a_failed_digest_back_once_and_refuses_a_sent_one(admin: Any) -> None:
    sub = ada(admin)
    run_id = add_run(admin.engine, admin.clock().date(), admin.clock())
    row = add_delivery(admin.engine, run_id, sub, "failed", admin.clock(), last_reply="451 try later")
    done = await post(admin, f"/admin/subscribers/{sub}/resend", confirm="yes")
    assert done.status_code == 200 and "back in the outbox" in done.text
    again = await post(admin, f"/admin/subscribers/{sub}/resend", confirm="yes")
    assert again.status_code == 409 and "never sent twice" in again.text
    with admin.engine.connect() as conn:
        states = conn.execute(sa.select(delivery.c.id, delivery.c.state)).all()
    assert states == [(row, "pending")]


async def test_delete_removes_the_data_and_the_audit_keeps_no_address(admin: Any) -> None:
    sub = ada(admin)
    done = await post(admin, f"/admin/subscribers/{sub}/delete", confirm="yes")
    assert done.status_code == 200
    with admin.engine.connect() as conn:
        email = conn.execute(sa.select(subscriber.c.email)).scalar()
    assert email == f"deleted-{sub}@deleted.invalid"
    entry = audit.recent(admin.engine)[0]
    assert entry.action == "subscriber.delete" and entry.target == f"subscriber {sub}"
    assert "ada@example.org" not in (await admin.client.get("/admin/audit")).text


async def test_the_kill_switch_pauses_and_releases_with_a_banner_and_an_audit(admin: Any) -> None:
    ask = await post(admin, "/admin/sending", action="pause", reason="relay maintenance")
    assert "Pause all sending?" in ask.text and not sending_pause(admin.engine).paused
    await post(admin, "/admin/sending", action="pause", reason="relay maintenance", confirm="yes")
    state = sending_pause(admin.engine)
    assert state.paused and state.by == "ops" and state.reason == "relay maintenance"
    page = await admin.client.get("/admin/subscribers")
    assert "Sending is paused" in page.text and "relay maintenance" in page.text
    await post(admin, "/admin/sending", action="release", confirm="yes")
    assert not sending_pause(admin.engine).paused
    actions = [e.action for e in audit.recent(admin.engine)]
    assert actions[:2] == ["sending.release", "sending.pause"]


async def test_the_deliveries_page_lists_problem_rows_with_their_replies(admin: Any) -> None:
    sub = ada(admin)
    run_id = add_run(admin.engine, admin.clock().date(), admin.clock())
    add_delivery(
        admin.engine, run_id, sub, "uncertain", admin.clock(), last_reply="connection dropped after DATA"
    )
    page = await admin.client.get("/admin/deliveries", params={"state": "uncertain"})
    assert "connection dropped after DATA" in page.text and "ada@example.org" in page.text
    failed = await admin.client.get("/admin/deliveries")
    assert "connection dropped" not in failed.text and "0 failed deliveries" in failed.text


async def test_an_unknown_subscriber_or_action_is_a_404(admin: Any) -> None:
    assert (await admin.client.get("/admin/subscribers/999")).status_code == 404
    sub = ada(admin)
    assert (await post(admin, f"/admin/subscribers/{sub}/explode", confirm="yes")).status_code == 404


async def test_a_status_from_a_later_version_never_breaks_a_page_or_an_action(admin: Any) -> None:
    sub = ada(admin)
    set_status(admin.engine, sub, "complained")
    assert (await admin.client.get("/admin")).status_code == 200
    listed = await admin.client.get("/admin/subscribers", params={"status": "complained"})
    assert "ada@example.org" in listed.text
    for name in ("pause", "resend", "delete"):
        answer = await post(admin, f"/admin/subscribers/{sub}/{name}", confirm="yes")
        assert answer.status_code in (200, 409), (name, answer.status_code)
        assert "ada@example.org" in answer.text or "deleted" in answer.text


def test_no_console_template_needs_unsafe_inline() -> None:
    import re
    from importlib import resources

    folder = resources.files("digest") / "templates" / "admin"
    names = [p.name for p in folder.iterdir() if p.name.endswith(".html")]
    assert len(names) >= 10
    for name in names:
        text = (folder / name).read_text(encoding="utf-8")
        assert "<script" not in text and "<style" not in text, name
        assert not re.search(r"\sstyle=", text), f"{name}: a style attribute needs 'unsafe-inline'"
        assert not re.search(r"\son[a-z]+=", text), f"{name}: an inline event handler"
