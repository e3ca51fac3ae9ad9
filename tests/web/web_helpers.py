"""Helpers for the web tests: a settable clock, a week of papers, the config, reading links from mails."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from digest.config import Config
from digest.config_load import parse_config
from digest.demo.smtp_sink import ReceivedMessage, SmtpSink
from digest.models import Paper

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = "test-secret-key-that-is-long-enough-0123456789"
BASE = "http://digest.test"
LINK = re.compile(r"http://digest\.test/(confirm|manage|u)/([A-Za-z0-9_.\-]+)")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def week_of_papers(today: date) -> list[Paper]:
    day = timedelta(days=1)
    return [
        Paper(
            id="2602.00001",
            title="Video Diffusion Models at Scale",
            summary="We train diffusion models on video.",
            daily_date=today - day,
            authors=("Ann Author",),
            upvotes=42,
            ai_keywords=("diffusion", "video generation"),
        ),
        Paper(
            id="2602.00002",
            title="Agents that Plan with Language Models",
            summary="A large language model plans for agents.",
            daily_date=today - 2 * day,
            upvotes=7,
        ),
        Paper(
            id="2602.00003",
            title="Flow Matching for Images <script>alert(1)</script>",
            summary="Flow matching beats diffusion on images.",
            daily_date=today - 3 * day,
            upvotes=19,
        ),
        Paper(
            id="2601.00009",
            title="An Old Diffusion Paper",
            summary="Too old for the preview window.",
            daily_date=today - 20 * day,
            upvotes=500,
        ),
    ]


def make_config(tmp_path: Path, smtp_port: int, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "web": {"base_url": BASE},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "from": "Paper Digest <digest@example.org>",
        },
        "digest": {"list_id": "paper-digest.example.org", "admin_email": "ops@example.org"},
    }
    data.update(extra)
    return parse_config(data, tmp_path / "config.toml")


#: The manage form as the page fills it in for a daily "diffusion" subscriber (without its CSRF token).
MANAGE_FORM = {"action": "save", "rules": "diffusion", "cadence": "daily", "weekday": "0"}


@dataclass
class Web:
    """The app under test, its database, mailbox and clock, and small helpers."""

    client: httpx.AsyncClient
    engine: sa.Engine
    sink: SmtpSink
    clock: Clock
    config: Config
    app: Any
    seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    async def form_token(self, path: str = "/") -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        match = CSRF_FIELD.search(page.text)
        assert match, "no CSRF field on the page"
        return match.group(1)

    async def subscribe(
        self, email: str, rules: str = "diffusion", name: str = "", **fields: str
    ) -> httpx.Response:
        token = await self.form_token()
        data = {"email": email, "rules": rules, "name": name, "website": "", "csrf_token": token, **fields}
        return await self.client.post("/subscribe", data=data)

    async def confirm(self, link: str) -> httpx.Response:
        """Open the confirmation link (a page with a button) and press the button, as a person does."""
        page = await self.client.get(link)
        match = CSRF_FIELD.search(page.text)
        if page.status_code != 200 or match is None:
            return page  # an error page, or "already subscribed": no button to press
        return await self.client.post(link, data={"csrf_token": match.group(1)})

    async def save_manage(self, link: str, token: str | None = None, **fields: str) -> httpx.Response:
        """Post the manage form at ``link``: MANAGE_FORM with ``fields`` changed, and ``token`` (or the one
        the page gives now)."""
        csrf = token or await self.form_token(link)
        return await self.client.post(link, data={**MANAGE_FORM, "csrf_token": csrf, **fields})

    def new_mail(self) -> list[ReceivedMessage]:
        """Messages that arrived since the last call."""
        got = self.sink.messages[self.seen :]
        self.seen = len(self.sink.messages)
        return got


def mail_text(message: ReceivedMessage) -> str:
    msg = message.message
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def links_in(message: ReceivedMessage) -> dict[str, str]:
    """{'confirm': '/confirm/TOKEN', 'manage': ..., 'u': ...} from the plain text part."""
    return {kind: f"/{kind}/{token}" for kind, token in LINK.findall(mail_text(message))}
