"""One POST to a webhook and what its answer means.

The URL of an incoming webhook is its only credential: it never reaches a log line, an exception
message or a reply we store. httpx logs every request's URL at INFO on its own logger, so that logger is
kept at WARNING; our messages name the channel, never the URL.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from digest.sources.http import parse_retry_after

USER_AGENT = "paper-digest/0.1 (+https://github.com/paper-digest; channel webhook)"
#: How long one POST may take (connect, write, read) before it counts as a timeout.
TIMEOUT_S = 15.0

logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs request URLs (our secret) at INFO

Verdict = Literal["posted", "retry", "refused"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST did: ``posted`` (2xx), ``retry`` (429, 5xx, timeout, connection), ``refused`` (4xx)."""

    verdict: Verdict
    status: int | None
    reply: str
    retry_after_s: float | None = None


def _reply(response: httpx.Response) -> str:
    text = " ".join(response.text[:300].split())
    return f"{response.status_code} {text}".strip()


async def post(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], timeout_s: float = TIMEOUT_S
) -> Answer:
    """POST ``body`` as JSON to ``url``; never raises for a network problem (that is a ``retry``)."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        response = await client.post(
            url,
            content=data,
            headers={"content-type": "application/json; charset=utf-8", "user-agent": USER_AGENT},
            timeout=httpx.Timeout(timeout_s),
        )
    except httpx.TimeoutException as exc:
        return Answer("retry", None, f"timed out ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        # The exception's text can quote the URL: only its kind is kept.
        return Answer("retry", None, f"connection failed ({type(exc).__name__})")
    code = response.status_code
    if 200 <= code < 300:
        return Answer("posted", code, _reply(response))
    if code == 429 or code >= 500 or code == 408:
        return Answer("retry", code, _reply(response), parse_retry_after(response.headers.get("retry-after")))
    return Answer("refused", code, _reply(response))
