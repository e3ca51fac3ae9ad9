"""Hugging Face Daily Papers: the JSON API first, the HTML page as the fallback (DESIGN.md section 7).

``GET {base_url}/api/daily_papers?date=D&limit=100&p=N`` pages until a short page. When the API fails or
answers something unexpected, ``{base_url}/papers/date/D`` is read instead. An empty list is an empty day
(normal); anything we cannot trust raises ``SourceError`` so no empty or partial digest goes out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

from digest.config import SourceConfig
from digest.errors import SourceError
from digest.models import Paper
from digest.sources.hf_html import parse_listing
from digest.sources.http import DEFAULT_RETRY, Deadline, RetryPolicy, get, new_client
from digest.sources.schema import parse_items

log = logging.getLogger("digest.sources")

PAGE_SIZE = 100  # the API's maximum
MAX_PAGES = 50  # 5,000 papers in a day would mean the paging is broken, not a busy day


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One day's papers, how many items were skipped as malformed, and where they came from."""

    day: date
    papers: list[Paper]
    skipped: int
    url: str
    via: str  # "api" | "html"


@dataclass(frozen=True, slots=True)
class FetchBatch:
    """Several days: every paper once (by arXiv id, latest daily_date wins) plus the per-day results."""

    papers: list[Paper]
    results: list[FetchResult] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)


def api_url(source: SourceConfig) -> str:
    return f"{source.base_url.rstrip('/')}/api/daily_papers"


def html_url(source: SourceConfig, day: date) -> str:
    return f"{source.base_url.rstrip('/')}/papers/date/{day.isoformat()}"


@asynccontextmanager
async def _client_scope(
    source: SourceConfig, client: httpx.AsyncClient | None
) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    async with new_client(source) as own:
        yield own


async def fetch_day(
    source: SourceConfig,
    day: date,
    *,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy | None = None,
) -> FetchResult:
    """Fetch and normalise the Daily Papers of ``day``; ``SourceError`` when neither API nor page can be trusted."""
    async with _client_scope(source, client) as c:
        return await _fetch_day(c, source, day, Deadline(source.deadline_s), retry or DEFAULT_RETRY)


async def fetch_days(
    source: SourceConfig,
    days: Sequence[date],
    *,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy | None = None,
) -> FetchBatch:
    """Fetch several days under one deadline; papers deduplicated by id. Any ``SourceError`` propagates.

    Days are fetched one after another: a look-back of a few days is a few requests, and being gentle
    with the site matters more than a second saved.
    """
    deadline = Deadline(source.deadline_s)
    policy = retry or DEFAULT_RETRY
    results: list[FetchResult] = []
    async with _client_scope(source, client) as c:
        for day in sorted(set(days)):
            results.append(await _fetch_day(c, source, day, deadline, policy))
    return FetchBatch(papers=merge_papers(p for r in results for p in r.papers), results=results)


def merge_papers(papers: Iterable[Paper]) -> list[Paper]:
    """One Paper per arXiv id: the one with the latest daily_date (the later one on a tie)."""
    merged: dict[str, Paper] = {}
    for paper in papers:
        old = merged.get(paper.id)
        if old is None or paper.daily_date >= old.daily_date:
            merged[paper.id] = paper
    return list(merged.values())


async def _fetch_day(
    client: httpx.AsyncClient, source: SourceConfig, day: date, deadline: Deadline, policy: RetryPolicy
) -> FetchResult:
    try:
        return await _fetch_api(client, source, day, deadline, policy)
    except SourceError as api_error:
        log.warning("%s; trying the HTML page", api_error)
        try:
            return await _fetch_html(client, source, day, deadline, policy)
        except SourceError as html_error:
            raise SourceError(
                api_error.url, f"{api_error.problem}; the HTML fallback failed too: {html_error}"
            ) from None


async def _fetch_api(
    client: httpx.AsyncClient, source: SourceConfig, day: date, deadline: Deadline, policy: RetryPolicy
) -> FetchResult:
    url = api_url(source)
    papers: list[Paper] = []
    seen: set[str] = set()
    skipped = 0
    first_url = ""
    for page in range(MAX_PAGES):
        params: dict[str, str | int] = {"date": day.isoformat(), "limit": PAGE_SIZE, "p": page}
        shown = str(httpx.URL(url, params=params))
        first_url = first_url or shown
        response = await get(client, source, url, params=params, deadline=deadline.using(policy))
        data = _json(response, shown)
        page_papers, page_skipped = parse_items(data, url=shown, day=day)
        fresh = [p for p in page_papers if p.id not in seen]
        if page > 0 and page_papers and not fresh:
            # A server that ignores `p` answers page 0 again: stop rather than loop.
            log.warning("%s repeats the previous page; stopping the paging", shown)
            break
        seen.update(p.id for p in fresh)
        papers.extend(fresh)
        skipped += page_skipped
        if not isinstance(data, list) or len(data) < PAGE_SIZE:  # a short page is the last one
            break
    else:
        raise SourceError(
            first_url, f"more than {MAX_PAGES} pages of {PAGE_SIZE} papers; the paging looks broken"
        )
    return FetchResult(day=day, papers=papers, skipped=skipped, url=first_url, via="api")


async def _fetch_html(
    client: httpx.AsyncClient, source: SourceConfig, day: date, deadline: Deadline, policy: RetryPolicy
) -> FetchResult:
    url = html_url(source, day)
    response = await get(client, source, url, deadline=deadline.using(policy), accept="text/html")
    listing = parse_listing(response.text, url=url)
    papers, skipped = parse_items(listing.items, url=url, day=listing.day or day)
    return FetchResult(day=day, papers=papers, skipped=skipped, url=url, via="html")


def _json(response: httpx.Response, url: str) -> object:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise SourceError(url, f"the body is not JSON ({kind}, {len(response.content)} bytes)") from None


def papers_from_api_json(data: object, *, url: str = "<file>", day: date | None = None) -> list[Paper]:
    """Papers from already-parsed HF-API JSON (a list of items); malformed items are skipped.

    ``day`` is used for items that do not carry ``paper.submittedOnDailyAt`` (the 2024 schema); without it
    such items take the day of their top-level ``publishedAt``.
    """
    return parse_items(data, url=url, day=day)[0]


def papers_from_file(path: Path | str, *, day: date | None = None) -> list[Paper]:
    """Papers from an HF-API-format JSON file (``digest match --papers FILE``); ``SourceError`` names the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(str(path), f"cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise SourceError(str(path), f"not JSON ({exc})") from None
    return papers_from_api_json(data, url=str(path), day=day)
