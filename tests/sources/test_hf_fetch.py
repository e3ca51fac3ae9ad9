"""Fetching over real HTTP from the snapshot server on loopback, including a misbehaving site."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.config import SourceConfig
from digest.demo.snapshot_server import API_PATH, Fault, SnapshotServer
from digest.errors import SourceError
from digest.sources import RetryPolicy, fetch_day, fetch_days

FAST = RetryPolicy(max_attempts=5, backoff_base_s=0.01, backoff_max_s=0.05)
DAY = date(2026, 8, 21)  # 17 papers in the capture
HTML_DAY = date(2024, 8, 1)  # only a listing page was captured


@pytest.fixture
def srv(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    with SnapshotServer(hf_fixtures) as server:
        yield server


def _source(srv: SnapshotServer, **kw: Any) -> SourceConfig:
    return SourceConfig(base_url=srv.base_url, **{"timeout_s": 2, "deadline_s": 20, **kw})


def _items(hf_fixtures: Path, day: date = DAY) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(
        (hf_fixtures / f"api_daily_papers_date-{day.isoformat()}.json").read_text(encoding="utf-8")
    )
    return data


def _synthetic_day(hf_fixtures: Path, n: int) -> list[dict[str, Any]]:
    """``n`` distinct items made by replicating the captured ones under new arXiv ids."""
    base = _items(hf_fixtures)
    out = []
    for i in range(n):
        item = copy.deepcopy(base[i % len(base)])
        item["paper"]["id"] = f"2608.{90000 + i}"
        out.append(item)
    return out


async def test_a_day_is_read_from_the_api_with_our_user_agent(srv: SnapshotServer) -> None:
    source = _source(srv, user_agent="paper-digest-test/1 (+mailto:ops@example.org)")
    result = await fetch_day(source, DAY, retry=FAST)
    assert (len(result.papers), result.skipped, result.via) == (17, 0, "api")
    assert result.url.endswith("/api/daily_papers?date=2026-08-21&limit=100&p=0")
    (request,) = srv.requests
    assert request.query == {"date": "2026-08-21", "limit": "100", "p": "0"}
    assert request.headers["user-agent"] == "paper-digest-test/1 (+mailto:ops@example.org)"


async def test_a_day_of_130_papers_takes_two_pages(srv: SnapshotServer, hf_fixtures: Path) -> None:
    srv.add_day(DAY, _synthetic_day(hf_fixtures, 130))
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert len(result.papers) == 130
    assert len({p.id for p in result.papers}) == 130
    assert [r.query["p"] for r in srv.requests] == ["0", "1"]


async def test_a_day_of_exactly_100_papers_asks_for_an_empty_second_page(
    srv: SnapshotServer, hf_fixtures: Path
) -> None:
    srv.add_day(DAY, _synthetic_day(hf_fixtures, 100))
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert len(result.papers) == 100
    assert [r.query["p"] for r in srv.requests] == ["0", "1"]


async def test_a_server_that_ignores_the_page_parameter_does_not_loop(
    srv: SnapshotServer, hf_fixtures: Path
) -> None:
    full_page = _synthetic_day(hf_fixtures, 100)
    # Every answer is the same full page, as an API that ignores `p` would give.
    srv.fail(API_PATH, [Fault(body=json.dumps(full_page).encode())] * 3)
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert len(result.papers) == 100
    assert len(srv.requests) == 2


async def test_429_with_retry_after_is_waited_out_then_succeeds(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(status=429, headers={"Retry-After": "1"})])
    started = time.monotonic()
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    elapsed = time.monotonic() - started
    assert (len(result.papers), result.via) == (17, "api")
    assert [r.status for r in srv.requests] == [429, 200]
    assert elapsed >= 0.95, "Retry-After: 1 was not honoured"


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(status=429, headers={"Retry-After": "3600"})])
    srv.fail(f"/papers/date/{DAY}", [Fault(status=429, headers={"Retry-After": "3600"})])
    started = time.monotonic()
    with pytest.raises(SourceError, match="HTTP 429"):
        await fetch_day(_source(srv, deadline_s=2), DAY, retry=FAST)
    assert time.monotonic() - started < 1.5


async def test_503_twice_then_success(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [503, 503])
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert (len(result.papers), result.via) == (17, "api")
    assert [r.status for r in srv.requests] == [503, 503, 200]


async def test_a_timed_out_request_is_retried(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(delay=2.0)])
    started = time.monotonic()
    result = await fetch_day(_source(srv, timeout_s=0.2), DAY, retry=FAST)
    assert (len(result.papers), result.via) == (17, "api")
    assert len(srv.requests_to(API_PATH)) == 1  # the stalled request never got logged as answered
    assert time.monotonic() - started < 1.5


async def test_a_dropped_connection_is_retried(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(drop=True)])
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert len(result.papers) == 17
    assert [r.status for r in srv.requests] == [0, 200]


async def test_a_site_that_stays_down_fails_within_the_deadline(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [503] * 100)
    srv.fail(f"/papers/date/{DAY}", [503] * 100)
    slow = RetryPolicy(max_attempts=100, backoff_base_s=0.1, backoff_max_s=0.2)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        await fetch_day(_source(srv, deadline_s=1.0), DAY, retry=slow)
    assert time.monotonic() - started < 1.6
    message = str(err.value)
    assert "HTTP 503" in message and "gave up after" in message
    assert err.value.url.startswith(srv.base_url + "/api/daily_papers")


async def test_an_object_body_falls_back_to_the_page_and_fails_when_the_page_is_missing(
    srv: SnapshotServer,
) -> None:
    srv.fail(API_PATH, [Fault(body=b'{"error": "Invalid date"}')])
    with pytest.raises(SourceError) as err:
        await fetch_day(_source(srv), DAY, retry=FAST)
    message = str(err.value)
    assert "expected a JSON array of papers, got an object with keys [error]" in message
    assert f"{srv.base_url}/papers/date/2026-08-21: HTTP 404" in message
    assert [r.path for r in srv.requests] == [API_PATH, "/papers/date/2026-08-21"]


async def test_an_object_body_falls_back_to_the_listing_page(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(body=b'{"error": "Invalid date"}')])
    result = await fetch_day(_source(srv), HTML_DAY, retry=FAST)
    assert (len(result.papers), result.skipped, result.via) == (13, 0, "html")
    assert result.url == f"{srv.base_url}/papers/date/2024-08-01"
    assert result.papers[0].title == "The Llama 3 Herd of Models"
    assert srv.requests[-1].headers["accept"] == "text/html"


async def test_a_body_that_is_not_json_falls_back_to_the_listing_page(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(body=b"<html>maintenance</html>", content_type="text/html")])
    result = await fetch_day(_source(srv), HTML_DAY, retry=FAST)
    assert (len(result.papers), result.via) == (13, "html")


async def test_an_api_that_is_gone_falls_back_to_the_listing_page(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [404])
    result = await fetch_day(_source(srv), HTML_DAY, retry=FAST)
    assert result.via == "html"
    assert [r.status for r in srv.requests] == [404, 200]  # a 404 is not retried


async def test_a_changed_listing_page_raises_naming_its_url(srv: SnapshotServer) -> None:
    srv.add_html(DAY, '<html><body><div class="SVELTE_HYDRATER" data-target="PaperFeed"></div></body></html>')
    srv.fail(API_PATH, [Fault(body=b"{}")])
    with pytest.raises(SourceError) as err:
        await fetch_day(_source(srv), DAY, retry=FAST)
    assert f"{srv.base_url}/papers/date/2026-08-21: no div.SVELTE_HYDRATER" in str(err.value)


async def test_an_empty_day_is_zero_papers_and_no_error(srv: SnapshotServer) -> None:
    result = await fetch_day(_source(srv), date(2026, 8, 22), retry=FAST)
    assert (result.papers, result.skipped, result.via) == ([], 0, "api")
    assert [r.path for r in srv.requests] == [API_PATH]  # an empty day is not a reason to try the page


async def test_one_item_missing_its_title_is_skipped_and_counted(
    srv: SnapshotServer, hf_fixtures: Path
) -> None:
    items = _items(hf_fixtures)
    del items[5]["paper"]["title"]
    del items[5]["title"]
    srv.add_day(DAY, items)
    result = await fetch_day(_source(srv), DAY, retry=FAST)
    assert (len(result.papers), result.skipped, result.via) == (16, 1, "api")


async def test_most_items_broken_is_a_source_error(srv: SnapshotServer, hf_fixtures: Path) -> None:
    items = _items(hf_fixtures)
    for item in items:
        item["paper"]["title"] = None
        item.pop("title")
    srv.add_day(DAY, items)
    with pytest.raises(SourceError, match="17 of 17 items fail the schema"):
        await fetch_day(_source(srv), DAY, retry=FAST)


async def test_the_2024_schema_over_http_takes_the_requested_day(srv: SnapshotServer) -> None:
    result = await fetch_day(_source(srv), date(2024, 5, 27), retry=FAST)
    assert len(result.papers) == 13
    assert {p.daily_date for p in result.papers} == {date(2024, 5, 27)}
    assert result.papers[0].thumbnail_url is not None


async def test_a_paper_on_two_days_is_one_paper_with_the_later_day(
    srv: SnapshotServer, hf_fixtures: Path
) -> None:
    items = _items(hf_fixtures)
    earlier = copy.deepcopy(items[0])
    earlier["paper"]["submittedOnDailyAt"] = "2026-08-20T09:00:00.000Z"
    earlier["paper"]["upvotes"] = 3
    srv.add_day(date(2026, 8, 20), [earlier])
    batch = await fetch_days(_source(srv), [DAY, date(2026, 8, 20), date(2026, 8, 22)], retry=FAST)
    assert [(r.day, len(r.papers)) for r in batch.results] == [
        (date(2026, 8, 20), 1),
        (DAY, 17),
        (date(2026, 8, 22), 0),
    ]
    assert len(batch.papers) == 17
    (paper,) = [p for p in batch.papers if p.id == items[0]["paper"]["id"]]
    assert (paper.daily_date, paper.upvotes) == (DAY, 163)


async def test_a_source_error_on_any_day_stops_the_batch(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(status=200), Fault(body=b'{"error": "x"}')])
    with pytest.raises(SourceError):
        await fetch_days(_source(srv), [date(2026, 7, 27), DAY], retry=FAST)


async def test_a_caller_supplied_client_is_used_and_left_open(srv: SnapshotServer) -> None:
    async with httpx.AsyncClient() as client:
        result = await fetch_day(_source(srv), DAY, client=client, retry=FAST)
        assert len(result.papers) == 17
        assert not client.is_closed
    assert srv.requests[0].headers["user-agent"].startswith("paper-digest/")
