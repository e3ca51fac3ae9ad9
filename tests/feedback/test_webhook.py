"""POST /webhooks/bounce: an ESP's events change subscribers only with the right shared secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from feedback_helpers import NOW, SECRET, add_active, status_of
from live_server import NoMail

from digest.config_load import parse_config
from digest.store.feedback import list_feedback
from digest.web import create_app

HOOK_SECRET = "esp-shared-secret-0123456789abcdef"


@pytest.fixture
async def client(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    monkeypatch.setenv("DIGEST_BOUNCE_WEBHOOK_SECRET", HOOK_SECRET)
    config = parse_config(
        {
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
            "bounces": {"webhook_secret_env": "DIGEST_BOUNCE_WEBHOOK_SECRET", "hard_threshold": 2},
        },
        tmp_path / "config.toml",
    )
    app = create_app(config, engine, NoMail("the webhook sends no mail"), clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://digest.example.org"
    ) as c:
        yield c


def event(email: str, kind: str, reason: str = "") -> dict[str, str]:
    return {"email": email, "type": kind, "reason": reason}


async def test_a_complaint_from_the_esp_unsubscribes_the_address(
    client: httpx.AsyncClient, engine: sa.Engine
) -> None:
    add_active(engine, "ada@example.org")

    answer = await client.post(
        "/webhooks/bounce",
        json=event("Ada@Example.org", "complaint", "abuse report"),
        headers={"Authorization": f"Bearer {HOOK_SECRET}"},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == 1
    assert status_of(engine, "ada@example.org") == "unsubscribed"
    assert [f.source for f in list_feedback(engine)] == ["webhook"]


async def test_a_list_of_hard_bounces_counts_toward_the_threshold(
    client: httpx.AsyncClient, engine: sa.Engine
) -> None:
    add_active(engine, "bob@example.org")
    body = [
        event("bob@example.org", "hard", "550 5.1.1 unknown"),
        event("bob@example.org", "hard", "550 again"),
    ]

    answer = await client.post("/webhooks/bounce", json=body, headers={"X-Webhook-Secret": HOOK_SECRET})

    assert answer.status_code == 200
    assert "marked bounced" in answer.json()["results"][1]["action"]
    assert status_of(engine, "bob@example.org") == "bounced"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-secret-0123456789abcdef"}, 403),
        ({"X-Webhook-Secret": HOOK_SECRET[:-1]}, 403),
        ({"Authorization": f"Basic {HOOK_SECRET}"}, 401),
    ],
)
async def test_a_missing_or_wrong_secret_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, engine: sa.Engine, headers: dict[str, str], status: int
) -> None:
    add_active(engine, "ada@example.org")

    answer = await client.post(
        "/webhooks/bounce", json=event("ada@example.org", "complaint"), headers=headers
    )

    assert answer.status_code == status
    assert status_of(engine, "ada@example.org") == "active"
    assert list_feedback(engine) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps([event("ada@example.org", "complaint"), event("x", "hard")]).encode(),
        json.dumps(event("ada@example.org", "spam")).encode(),
        json.dumps([]).encode(),
    ],
)
async def test_a_bad_body_is_refused_whole(client: httpx.AsyncClient, engine: sa.Engine, body: bytes) -> None:
    add_active(engine, "ada@example.org")

    answer = await client.post(
        "/webhooks/bounce", content=body, headers={"Authorization": f"Bearer {HOOK_SECRET}"}
    )

    assert answer.status_code == 400 and answer.json()["error"]
    assert status_of(engine, "ada@example.org") == "active", "no event of a refused body is applied"
    assert list_feedback(engine) == []


async def test_without_a_configured_secret_there_is_no_webhook(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    config = parse_config({"smtp": {"host": "127.0.0.1", "security": "none"}}, tmp_path / "config.toml")
    app = create_app(config, engine, NoMail("the webhook sends no mail"), clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://d.example.org"
    ) as c:
        answer = await c.post(
            "/webhooks/bounce", json=event("a@example.org", "hard"), headers={"X-Webhook-Secret": "x"}
        )
    assert answer.status_code == 404
