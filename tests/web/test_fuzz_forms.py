"""Arbitrary text, every control character included, through every field of every form: never a 5xx, never
a traceback, and the site keeps working for the next visitor (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_web_routes import _subscribe_and_confirm
from web_helpers import Web, links_in

CONTROLS = [
    chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
]
text = st.lists(
    st.one_of(st.sampled_from(CONTROLS), st.characters(exclude_categories=("Cs",))), max_size=40
).map("".join)
SUBSCRIBE_FIELDS = ("email", "name", "rules", "website")
MANAGE_FIELDS = ("action", "rules", "cadence", "weekday", "confirm_delete")


@pytest.fixture
async def fuzz_web(web_factory: Any, any_engine: sa.Engine) -> tuple[Web, dict[str, str]]:
    web: Web = await web_factory(engine=any_engine, subscribe_limit=(100_000, 1.0))
    return web, await _subscribe_and_confirm(web, "owner@example.org")


def _no_crash(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text
    crashes = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert crashes == [], crashes[0].getMessage() if crashes else ""


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(text, min_size=5, max_size=5), action=st.sampled_from(["save", "pause", "resume", "x"])
)
@example(values=["\x00", "\x00\u202e", "\x00diffusion\x00", "\x1b]52;c;eA==\x07", "1\x00"], action="save")
@example(values=["".join(CONTROLS)] * 5, action="save")
async def test_no_form_field_can_make_the_site_fail(
    fuzz_web: tuple[Web, dict[str, str]], caplog: pytest.LogCaptureFixture, values: list[str], action: str
) -> None:
    web, links = fuzz_web
    caplog.clear()
    token = await web.form_token()
    data = dict(zip(SUBSCRIBE_FIELDS, values, strict=False))
    # The email field once as typed and once around a real address (so the store is reached).
    for email in (values[0], f"{values[0]}fuzz@example.org"):
        answer = await web.client.post(
            "/subscribe", data={**data, "email": email, "website": "", "csrf_token": token}
        )
        _no_crash(answer, caplog)
    _no_crash(await web.client.post("/preview", data={**data, "csrf_token": token}), caplog)
    _no_crash(await web.client.get("/preview", params={"rules": values[2]}), caplog)
    manage = dict(zip(MANAGE_FIELDS, values, strict=False))
    manage.update(action=action, csrf_token=await web.form_token(links["manage"]))
    if action == "save":
        manage["rules"] = f"{values[1]}diffusion{values[2]}"
    _no_crash(await web.client.post(links["manage"], data=manage), caplog)
    _no_crash(await web.client.get(f"/manage/{quote(values[3], safe='')}"), caplog)
    # Issue 15's pages take their input in the path (a signed token): any text there is a clean refusal.
    for page in ("/d/{}", "/archive/{}", "/feed/{}.atom"):
        _no_crash(await web.client.get(page.format(quote(values[4], safe=""))), caplog)
    # The site still works for the next visitor: a new address gets its confirmation mail.
    web.new_mail()
    web.clock.advance(hours=2)
    fresh = f"next{abs(hash(tuple(values))) % 10**9}@example.org"
    assert (await web.subscribe(fresh)).status_code == 200
    mails = [m for m in web.new_mail() if m.recipients == (fresh,)]
    assert len(mails) == 1 and "confirm" in links_in(mails[0])
