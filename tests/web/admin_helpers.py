"""Helpers for the console tests: a config with [admin], its password, signing in, reading form tokens."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from web_helpers import Web, make_config

from digest.config import Config
from digest.web.admin.auth import hash_password

USER = "ops"
PASSWORD = "correct horse battery staple"
HASH_ENV = "DIGEST_ADMIN_PASSWORD_HASH"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def admin_config(tmp_path: Path, smtp_port: int, **extra: Any) -> Config:
    admin = {"username": USER, "idle_timeout_minutes": 30, **extra.pop("admin", {})}
    return make_config(tmp_path, smtp_port, admin=admin, **extra)


def csrf_of(page: httpx.Response) -> str:
    match = CSRF_FIELD.search(page.text)
    assert match, f"no CSRF field on {page.url}"
    return match.group(1)


async def try_login(web: Web, password: str = PASSWORD, user: str = USER) -> httpx.Response:
    form = await web.client.get("/admin/login")
    assert form.status_code == 200, form.text
    return await web.client.post(
        "/admin/login", data={"username": user, "password": password, "csrf_token": csrf_of(form)}
    )


async def sign_in(web: Web) -> None:
    answer = await try_login(web)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin"


async def token(web: Web, path: str = "/admin") -> str:
    page = await web.client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page)
