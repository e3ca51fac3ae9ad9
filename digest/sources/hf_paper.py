"""One paper by arXiv id: ``GET {base_url}/api/papers/{id}`` (for a liked paper older than the window).

The answer is the ``paper`` object of a Daily Papers item. A 404 means Hugging Face does not know the
paper (``None``); anything else that cannot be trusted raises ``SourceError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from digest.config import SourceConfig
from digest.errors import SourceError
from digest.models import Paper
from digest.sources.http import DEFAULT_RETRY, Deadline, RetryPolicy, get, new_client
from digest.sources.schema import ARXIV_ID, Item, PaperPart


@dataclass(frozen=True, slots=True)
class FetchedPaper:
    """A paper fetched by id, and whether it was ever on the Daily Papers list (only those are stored)."""

    paper: Paper
    on_daily_list: bool


def paper_url(source: SourceConfig, paper_id: str) -> str:
    return f"{source.base_url.rstrip('/')}/api/papers/{paper_id}"


async def fetch_paper(
    source: SourceConfig,
    paper_id: str,
    *,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy | None = None,
) -> FetchedPaper | None:
    """The paper with this arXiv id from the HF API, or None when HF answers 404."""
    if not ARXIV_ID.match(paper_id):
        raise SourceError(paper_id, "not an arXiv id")
    url = paper_url(source, paper_id)
    own = client is None
    c = client or new_client(source)
    try:
        deadline = Deadline(source.deadline_s).using(retry or DEFAULT_RETRY)
        response = await get(c, source, url, deadline=deadline)
    except SourceError as exc:
        if exc.problem.startswith("HTTP 404"):  # an answer ("no such paper"), not a failure
            return None
        raise
    finally:
        if own:
            await c.aclose()
    return _parse(response, url)


def _parse(response: httpx.Response, url: str) -> FetchedPaper:
    try:
        part = PaperPart.model_validate(response.json())
    except ValueError as exc:  # JSON decoding and schema errors alike
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
        raise SourceError(url, f"unexpected answer: {detail}") from None
    listed = part.submittedOnDailyAt is not None
    # A paper never listed has no daily date: its publication day stands in (it is not stored).
    day = None if listed else (part.publishedAt.date() if part.publishedAt else None)
    try:
        paper = Item(paper=part).to_paper(day)
    except ValueError as exc:
        raise SourceError(url, f"unexpected answer: {exc}") from None
    if paper.id != part.id:  # pragma: no cover - to_paper keeps the id
        raise SourceError(url, "the answer is for another paper")
    return FetchedPaper(paper, listed)
