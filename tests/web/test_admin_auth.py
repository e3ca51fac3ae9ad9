"""The console's door, in-process: off without [admin], argon2 login, the session cookie, idle timeout,
CSRF on every form, failed logins slowed and counted in the database (shared by every process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from admin_helpers import (
    HASH_ENV,
    PASSWORD,
    USER,
    admin_config,
    csrf_of,
    password_hash,
    sign_in,
    token,
    try_login,
)
from web_helpers import make_config

from digest.errors import ConfigError
from digest.store.tables import admin_audit, admin_login_failure
from digest.web.admin import auth, signin


@pytest.fixture(autouse=True)
def _hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HASH_ENV, password_hash())


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays failed logins asked for (recorded instead of slept)."""
    asked: list[float] = []

    async def record(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(signin, "sleep", record)
    return asked


@pytest.fixture
async def console(web_factory: Any, tmp_path: Path, sink: Any) -> Any:
    return await web_factory(config=admin_config(tmp_path, sink.port))


async def test_without_an_admin_section_every_admin_path_is_a_404(web: Any) -> None:
    for path in ("/admin", "/admin/", "/admin/login", "/admin/subscribers", "/admin/static/admin.css"):
        assert (await web.client.get(path)).status_code == 404, path
    assert (await web.client.post("/admin/login", data={"username": "a", "password": "b"})).status_code == 404
    assert (await web.client.post("/admin/sending", data={"action": "pause"})).status_code == 404


async def test_an_admin_section_without_its_password_hash_stops_the_start(
    web_factory: Any, tmp_path: Path, sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HASH_ENV)
    with pytest.raises(ConfigError, match="DIGEST_ADMIN_PASSWORD_HASH"):
        await web_factory(config=admin_config(tmp_path, sink.port))
    monkeypatch.setenv(HASH_ENV, "plain-text-password")
    with pytest.raises(ConfigError, match="argon2"):
        await web_factory(config=admin_config(tmp_path, sink.port))


async def test_the_hash_can_come_from_a_file(
    web_factory: Any, tmp_path: Path, sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(HASH_ENV)
    secret = tmp_path / "admin_hash"
    secret.write_text(password_hash() + "\n")
    monkeypatch.setenv(f"{HASH_ENV}_FILE", str(secret))
    web = await web_factory(config=admin_config(tmp_path, sink.port))
    await sign_in(web)
    assert (await web.client.get("/admin")).status_code == 200


async def test_pages_ask_to_sign_in_first(console: Any) -> None:
    for path in ("/admin", "/admin/subscribers", "/admin/deliveries", "/admin/audit", "/admin/subscribers/1"):
        answer = await console.client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login"), path


async def test_signing_in_sets_a_strict_httponly_session_cookie_and_is_audited(console: Any) -> None:
    answer = await try_login(console)
    assert answer.status_code == 303
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "digest_admin=" in v)
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/admin" in flags
    assert "secure" not in flags  # the test site is http://
    page = await console.client.get("/admin")
    assert page.status_code == 200 and "Digests, last 30 days" in page.text
    with console.engine.connect() as conn:
        row = conn.execute(sa.select(admin_audit)).one()
    assert (row.actor, row.action, row.ip) == (USER, "login", "192.0.2.10")


async def test_the_cookie_is_secure_on_an_https_site(web_factory: Any, tmp_path: Path, sink: Any) -> None:
    web = await web_factory(config=admin_config(tmp_path, sink.port, web={"base_url": "https://digest.test"}))
    web.client.base_url = "https://digest.test"  # secure cookies only travel over https
    answer = await try_login(web)
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "digest_admin=" in v)
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_an_idle_session_ends_and_an_active_one_slides(console: Any) -> None:
    await sign_in(console)
    console.clock.advance(minutes=25)
    assert (await console.client.get("/admin")).status_code == 200  # activity renews the cookie
    console.clock.advance(minutes=25)
    assert (await console.client.get("/admin")).status_code == 200
    console.clock.advance(minutes=31)
    gone = await console.client.get("/admin")
    assert gone.status_code == 303 and gone.headers["location"] == "/admin/login?expired=1"


async def test_a_forged_or_foreign_session_cookie_is_refused(console: Any) -> None:
    console.client.cookies.set("digest_admin", "eyJ1Ijoib3BzIn0.forged", path="/admin")
    assert (await console.client.get("/admin")).status_code == 303
    other = auth.Sessions(
        "another-secret-key-that-is-long-enough-000", password_hash(), auth.ABSOLUTE_LIFETIME
    )
    value = other.dump(other.new(USER, console.clock()), console.clock())
    console.client.cookies.set("digest_admin", value, path="/admin")
    assert (await console.client.get("/admin")).status_code == 303


async def test_a_wrong_password_is_slowed_counted_and_answers_like_a_wrong_name(
    console: Any, waits: list[float]
) -> None:
    wrong = await try_login(console, "nope")
    unknown = await try_login(console, PASSWORD, user="root")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong name or password." in wrong.text and "Wrong name or password." in unknown.text
    assert "digest_admin=" not in wrong.headers.get("set-cookie", "")
    assert len(waits) == 2 and waits[0] > 0 and waits[1] > waits[0]  # each failure waits longer
    with console.engine.connect() as conn:
        rows = conn.execute(sa.select(admin_login_failure.c.username, admin_login_failure.c.ip)).all()
    assert sorted(rows) == [("ops", "192.0.2.10"), ("root", "192.0.2.10")]


async def test_brute_force_locks_the_account_across_processes_and_addresses(
    web_factory: Any, tmp_path: Path, sink: Any, waits: list[float]
) -> None:
    config = admin_config(
        tmp_path, sink.port, admin={"max_failures_per_account": 3, "max_failures_per_ip": 50}
    )
    first = await web_factory(config=config, ip="198.51.100.1")
    second = await web_factory(config=config, ip="198.51.100.2")  # another process, another address
    for web in (first, second, first):
        assert (await try_login(web, "guess")).status_code == 401
    locked = await try_login(second, PASSWORD)  # even the right password waits now
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60
    first.clock.advance(minutes=16)
    assert (await try_login(second, PASSWORD)).status_code == 303


async def test_one_address_guessing_many_names_is_locked_out(
    web_factory: Any, tmp_path: Path, sink: Any, waits: list[float]
) -> None:
    config = admin_config(tmp_path, sink.port, admin={"max_failures_per_ip": 4})
    attacker = await web_factory(config=config, ip="203.0.113.9")
    for i in range(4):
        assert (await try_login(attacker, "x", user=f"user{i}")).status_code == 401
    assert (await try_login(attacker, PASSWORD)).status_code == 429
    other = await web_factory(config=config, ip="203.0.113.10")
    assert (await try_login(other, PASSWORD)).status_code == 303  # the real admin elsewhere gets in


async def test_a_success_clears_the_account_count(console: Any, waits: list[float]) -> None:
    for _ in range(4):
        await try_login(console, "nope")
    await sign_in(console)
    with console.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(admin_login_failure)).scalar() == 0


async def test_the_login_form_needs_its_csrf_token(console: Any) -> None:
    await console.client.get("/admin/login")
    answer = await console.client.post("/admin/login", data={"username": USER, "password": PASSWORD})
    assert answer.status_code == 403 and "digest_admin=" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "path, data",
    [
        ("/admin/sending", {"action": "pause", "confirm": "yes"}),
        ("/admin/subscribers/1/pause", {"confirm": "yes"}),
        ("/admin/subscribers/1/delete", {"confirm": "yes"}),
        ("/admin/logout", {}),
    ],
)
async def test_every_console_form_refuses_a_post_without_the_session_token(
    console: Any, path: str, data: dict[str, str]
) -> None:
    from digest.models import SubscriberStatus
    from digest.store.settings import sending_pause
    from digest.store.subscribers import add_subscriber, get_subscriber

    sub = add_subscriber(
        console.engine, "ada@example.org", ["diffusion"], now=console.clock(), status=SubscriberStatus.ACTIVE
    )
    assert sub.id == 1
    await sign_in(console)
    real = await token(console)
    for forged in ("", "x" * 40, real[:-2] + "zz"):
        answer = await console.client.post(path, data={**data, "csrf_token": forged})
        if path == "/admin/logout":
            assert (await console.client.get("/admin")).status_code == 200, "a forged logout did nothing"
            continue
        assert answer.status_code == 403, (path, forged)
    assert not sending_pause(console.engine).paused
    assert get_subscriber(console.engine, 1).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path, data",
    [
        ("/admin/sending", {"action": "pause", "confirm": "yes"}),
        ("/admin/subscribers/1/pause", {"confirm": "yes"}),
    ],
)
async def test_a_console_form_posted_after_the_session_ended_goes_to_sign_in_and_changes_nothing(
    console: Any, path: str, data: dict[str, str]
) -> None:
    from digest.models import SubscriberStatus
    from digest.store.settings import sending_pause
    from digest.store.subscribers import add_subscriber, get_subscriber

    add_subscriber(
        console.engine, "ada@example.org", ["diffusion"], now=console.clock(), status=SubscriberStatus.ACTIVE
    )
    await sign_in(console)
    real = await token(console)
    console.clock.advance(minutes=31)  # idle past the timeout: the token is right, the session is gone
    answer = await console.client.post(path, data={**data, "csrf_token": real})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login?expired=1"
    assert not sending_pause(console.engine).paused
    assert get_subscriber(console.engine, 1).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


async def test_another_sessions_token_does_not_fit(web_factory: Any, tmp_path: Path, sink: Any) -> None:
    config = admin_config(tmp_path, sink.port)
    one, two = await web_factory(config=config), await web_factory(config=config)
    await sign_in(one)
    await sign_in(two)
    stolen = await token(one)
    answer = await two.client.post(
        "/admin/sending", data={"action": "pause", "confirm": "yes", "csrf_token": stolen}
    )
    assert answer.status_code == 403


async def test_signing_out_ends_the_session(console: Any) -> None:
    await sign_in(console)
    answer = await console.client.post("/admin/logout", data={"csrf_token": await token(console)})
    assert answer.status_code == 303
    assert (await console.client.get("/admin")).status_code == 303
    login = await console.client.get("/admin/login")
    assert csrf_of(login)


def test_make_config_without_admin_has_none(tmp_path: Path) -> None:
    assert make_config(tmp_path, 25).admin is None


async def test_parallel_guesses_cannot_slip_under_the_limit_together(
    web_factory: Any, tmp_path: Path, sink: Any, waits: list[float]
) -> None:
    import asyncio

    config = admin_config(tmp_path, sink.port, admin={"max_failures_per_account": 3})
    web = await web_factory(config=config)
    form = csrf_of(await web.client.get("/admin/login"))
    guess = {"username": USER, "password": "guess", "csrf_token": form}
    answers = await asyncio.gather(*(web.client.post("/admin/login", data=guess) for _ in range(10)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) <= 3 and codes.count(429) >= 7, codes
    with web.engine.connect() as conn:
        counted = conn.execute(sa.select(sa.func.count()).select_from(admin_login_failure)).scalar()
    assert counted == codes.count(401), "refused attempts do not extend the lock"
