"""``POST /webhooks/bounce``: bounce and complaint events from an ESP (DESIGN sections 9 and 12).

The body is generic JSON, one event or a list of them::

    {"email": "ada@example.org", "type": "hard" | "soft" | "complaint", "reason": "550 5.1.1 user unknown"}

The shared secret (``[bounces] webhook_secret_env``) comes as ``Authorization: Bearer <secret>`` or
``X-Webhook-Secret: <secret>`` and is compared in constant time: none is 401, a wrong one 403, and neither
changes anything. A body that is not valid is refused whole (400): no event of it is applied. Without a
configured secret the route does not exist (404).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digest.config import Config
from digest.feedback import Failure, Kind, process_event, settings_for
from digest.store.db import Engine

MAX_BODY = 1024 * 1024
MAX_EVENTS = 1000
_TYPES = ("hard", "soft", "complaint")


class BadEvent(ValueError):
    """The body is not a list of valid events (the message says which and why)."""


def parse_events(body: bytes) -> list[tuple[Failure, bytes]]:
    """Each event with its own JSON (kept in the feedback table); BadEvent on anything invalid."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadEvent(f"the body is not JSON ({exc})") from None
    items = data if isinstance(data, list) else [data]
    if not items or len(items) > MAX_EVENTS:
        raise BadEvent(f"expected 1 to {MAX_EVENTS} events")
    events = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadEvent(f"event {n}: expected an object with email, type and reason")
        email, kind, reason = item.get("email"), item.get("type"), item.get("reason", "")
        if (
            not isinstance(email, str)
            or "@" not in email
            or len(email) > 320
            or any(c in email for c in "\r\n\0 ")
        ):
            raise BadEvent(f"event {n}: 'email' must be an address")
        if kind not in _TYPES:
            raise BadEvent(f"event {n}: 'type' must be one of {', '.join(_TYPES)}")
        if not isinstance(reason, str):
            raise BadEvent(f"event {n}: 'reason' must be a string")
        failure = Failure(email.strip().lower(), cast(Kind, kind), " ".join(reason.split())[:500])
        events.append((failure, json.dumps(item, ensure_ascii=False).encode("utf-8")))
    return events


def _given_secret(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-webhook-secret")


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def webhooks_router(config: Config, engine: Engine, clock: Callable[[], datetime]) -> APIRouter:
    """The webhook routes; the secret is read once, at start-up (a missing one stops the start)."""
    router = APIRouter()
    secret = config.bounce_webhook_secret()
    settings = settings_for(config) if secret else None

    @router.post("/webhooks/bounce")
    async def bounce(request: Request) -> JSONResponse:
        if secret is None or settings is None:
            return _error(404, "no bounce webhook is configured")
        given = _given_secret(request)
        if not given:
            return _error(401, "missing secret", **{"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            return _error(403, "wrong secret")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "the body is too large")
        try:
            events = parse_events(body)
        except BadEvent as exc:
            return _error(400, str(exc))
        results: list[dict[str, Any]] = []
        for failure, raw in events:
            result = await run_in_threadpool(
                process_event, engine, settings, failure, raw, source="webhook", now=clock()
            )
            results.append(
                {"email": result.email or failure.email, "type": result.kind, "action": result.action}
            )
        return JSONResponse({"recorded": len(results), "results": results})

    return router
