"""Hostile requests: huge and chunked bodies, file parts, forged proxy headers and Host, errors; the
subscribe limits shared by processes through the database; the same work for a new and a known address."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from test_web_routes import SECRET_DETAIL, _failed_run_with_an_smtp_alert, _subscribe_and_confirm
from web_helpers import BASE, NOW, SECRET, Web, make_config

from digest.notices import archive_url, digest_url, feed_url
from digest.store.subscribers import find_subscriber
from digest.web.guard import MAX_BODY
from digest.web.security import SECURITY_HEADERS


async def _form_routes(web: Web) -> list[str]:
    links = await _subscribe_and_confirm(web)
    return ["/subscribe", "/preview", links["manage"], links["u"]]


async def test_bodies_over_64_kb_get_413_before_being_read_on_every_form_route(web: Web) -> None:
    big = {"rules": "x" * (MAX_BODY + 1), "email": "ann@example.org"}
    for path in await _form_routes(web):
        answer = await web.client.post(path, data=big)
        assert answer.status_code == 413, path
        assert "at most 64 KB" in answer.text

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(20):
                yield b"rules=" + b"y" * 8192

        streamed = await web.client.post(
            path, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert streamed.status_code == 413, path
        assert "content-length" not in streamed.request.headers


async def test_file_parts_are_refused_and_nothing_is_written_to_tmp(
    web: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    for path in await _form_routes(web):
        answer = await web.client.post(
            path,
            data={"rules": "diffusion"},
            files={"file": ("a.bin", b"\0" * 60_000, "application/octet-stream")},
        )
        assert answer.status_code == 400 and "without attachments" in answer.text, path
    assert os.listdir(spool) == []
    # The one-click unsubscribe's multipart body (RFC 8058) has no file part: still accepted.
    links = await _subscribe_and_confirm(web, "bob@example.org")
    one_click = await web.client.post(links["u"], files={"List-Unsubscribe": (None, "One-Click")})
    assert one_click.status_code == 200


async def test_errors_carry_the_security_headers_of_every_page(web: Web) -> None:
    @web.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web.app, raise_app_exceptions=False), base_url=BASE
    )
    async with client:
        answer = await client.get("/boom")
    assert answer.status_code == 500 and "a bug" not in answer.text
    for name, value in SECURITY_HEADERS:
        assert answer.headers[name.decode()] == value.decode()
    too_big = await web.client.post("/subscribe", content=b"x" * (MAX_BODY + 1))
    assert too_big.status_code == 413 and "content-security-policy" in too_big.headers


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(web_factory: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, 2525, web={"base_url": BASE, "trust_proxy": True})
    direct: Web = await web_factory(ip="203.0.113.7", config=config, subscribe_limit=(2, 3600.0))
    for n in range(2):
        assert (await _post(direct, f"a{n}@example.org", f"198.51.100.{n}")).status_code == 200
    # Reaching the app directly with a new X-Forwarded-For each time does not reset the limit.
    assert (await _post(direct, "a9@example.org", "198.51.100.99")).status_code == 429
    proxy: Web = await web_factory(ip="127.0.0.1", config=config, subscribe_limit=(2, 3600.0))
    for n in range(3):  # behind the trusted (loopback) proxy, each visitor has their own limit
        answer = await _post(proxy, f"b{n}@example.org", f"192.0.2.200, 198.51.100.{n}, 127.0.0.1")
        assert answer.status_code == 200


async def _post(web: Web, email: str, forwarded_for: str) -> httpx.Response:
    token = await web.form_token()
    return await web.client.post(
        "/subscribe",
        data={"email": email, "rules": "diffusion", "csrf_token": token},
        headers={"x-forwarded-for": forwarded_for},
    )


async def test_healthz_details_only_for_a_loopback_peer_without_any_forwarding_header(
    web_factory: Any,
) -> None:
    local: Web = await web_factory(ip="127.0.0.1")
    await _failed_run_with_an_smtp_alert(local)
    assert SECRET_DETAIL in (await local.client.get("/healthz")).text
    for header in ("x-forwarded-host", "x-forwarded-proto", "forwarded", "via"):
        proxied = await local.client.get("/healthz", headers={header: "https"})
        assert SECRET_DETAIL not in proxied.text, header
    remote: Web = await web_factory(ip="198.51.100.4")
    spoofed = await remote.client.get("/healthz", headers={"x-forwarded-for": "127.0.0.1"})
    assert SECRET_DETAIL not in spoofed.text


async def test_trailing_slash_redirects_never_echo_the_host_header(web: Web) -> None:
    answer = await web.client.get("/healthz/?x=1", headers={"host": "evil.example"})
    assert answer.status_code == 307 and answer.headers["location"] == "/healthz?x=1"
    for path in ("//evil.example/", "/nope/"):
        assert (await web.client.get(BASE + path, headers={"host": "evil.example"})).status_code == 404


async def test_the_subscribe_limits_are_shared_by_two_apps_on_one_database(
    web_factory: Any, any_engine: sa.Engine
) -> None:
    first: Web = await web_factory(engine=any_engine, ip="192.0.2.50", subscribe_limit=(3, 3600.0))
    second: Web = await web_factory(engine=any_engine, ip="192.0.2.50", subscribe_limit=(3, 3600.0))
    for n, web in enumerate((first, second, first)):
        assert (await web.subscribe(f"p{n}@example.org")).status_code == 200
    assert (await second.subscribe("p9@example.org")).status_code == 429
    # Three mails a day per address, whichever process answers (a new IP each time: only the address counts).
    first.new_mail()
    apps = [await web_factory(engine=any_engine, ip=f"192.0.2.{60 + n}") for n in range(5)]
    for app in apps:
        first.clock.advance(hours=2)  # past the hourly lock each time
        assert (await app.subscribe("target@example.org", "agents")).status_code == 200
    assert [m.recipients for m in first.new_mail()] == [("target@example.org",)] * 3


async def test_a_new_and_a_known_address_run_the_same_statements_before_the_answer(
    web_factory: Any, any_engine: sa.Engine
) -> None:
    await _subscribe_and_confirm(await web_factory(engine=any_engine), "known@example.org")
    traces = []
    for n, address in enumerate(("known@example.org", "new@example.org")):
        ip = f"198.51.100.{n + 1}"
        web: Web = await web_factory(engine=any_engine, ip=ip)
        traces.append(await _statements_before_answer(web, any_engine, address, ip))
    assert traces[0] == traces[1]
    assert all("subscriber" not in s for s in traces[0]), "nothing about the address before the answer"


async def _statements_before_answer(web: Web, engine: sa.Engine, address: str, ip: str) -> list[str]:
    """The SQL the subscribe form runs for ``address`` before the answer starts."""
    token = await web.form_token()
    trace: list[str] = []
    answered = [False]

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not answered[0]:
            trace.append(statement)

    async def watch(scope: Any, receive: Any, send: Any) -> None:
        async def spy(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered[0] = True
            await send(message)

        await web.app(scope, receive, spy)

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=watch, client=(ip, 4000)), base_url=BASE, cookies=web.client.cookies
    )
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        async with client:
            answer = await client.post(
                "/subscribe", data={"email": address, "rules": "agents", "csrf_token": token}
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert answer.status_code == 200
    return trace


async def _reader_pages(web: Web) -> list[str]:
    """Issue 15's pages (web view, archive, feed) of a confirmed subscriber, by their real links."""
    await _subscribe_and_confirm(web, "reader@example.org")
    sub = find_subscriber(web.engine, "reader@example.org")
    assert sub is not None
    urls = [
        digest_url(web.config, SECRET, sub, NOW.date()),
        archive_url(web.config, SECRET, sub),
        feed_url(web.config, SECRET, sub),
    ]
    return [url.removeprefix(web.config.web.base_url) for url in urls]


async def test_the_web_view_archive_and_feed_carry_the_guard_and_the_security_headers(web: Web) -> None:
    for path in await _reader_pages(web):
        answer = await web.client.get(path)
        assert answer.status_code < 500, path
        for name, _value in SECURITY_HEADERS:
            assert name.decode() in answer.headers, (path, name)
        forged = await web.client.get(path[:-8] + "AAAAAAAA")
        assert forged.status_code < 500 and "x-frame-options" in forged.headers, path
        big = await web.client.post(path, content=b"x" * (MAX_BODY + 1))
        assert big.status_code == 413 and "content-security-policy" in big.headers, path
        file_part = await web.client.post(path, files={"file": ("a.bin", b"\0" * 1000, "text/plain")})
        assert file_part.status_code == 400, path
