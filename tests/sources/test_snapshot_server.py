"""The loopback server that plays the Hugging Face site from captured files (used by the demo and tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.demo.snapshot_server import API_PATH, Fault, SnapshotServer


@pytest.fixture
def srv(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    with SnapshotServer(hf_fixtures) as server:
        yield server


def test_the_api_pages_over_the_stored_array(srv: SnapshotServer) -> None:
    with httpx.Client(base_url=srv.base_url) as client:
        whole = client.get(API_PATH, params={"date": "2025-10-15", "limit": 100}).json()
        first = client.get(API_PATH, params={"date": "2025-10-15", "limit": 10, "p": 0}).json()
        third = client.get(API_PATH, params={"date": "2025-10-15", "limit": 10, "p": 2}).json()
        default = client.get(API_PATH, params={"date": "2025-10-15"}).json()
        beyond = client.get(API_PATH, params={"date": "2025-10-15", "limit": 10, "p": 3}).json()
    assert len(whole) == 26 and whole[0]["paper"]["id"] == "2510.12586"
    assert first == whole[:10] and third == whole[20:] and beyond == []
    assert default == whole  # the real API's default limit is 50


def test_an_unknown_day_is_an_empty_list_and_an_unknown_page_is_404(srv: SnapshotServer) -> None:
    with httpx.Client(base_url=srv.base_url) as client:
        api = client.get(API_PATH, params={"date": "2030-01-01"})
        page = client.get("/papers/date/2030-01-01")
    assert (api.status_code, api.json()) == (200, [])
    assert page.status_code == 404


def test_the_listing_page_is_served_byte_for_byte(srv: SnapshotServer, hf_fixtures: Path) -> None:
    with httpx.Client(base_url=srv.base_url) as client:
        by_path = client.get("/papers/date/2024-08-01")
        by_query = client.get("/papers", params={"date": "2024-08-01"})
        api = client.get(API_PATH, params={"date": "2024-08-01"}).json()
    captured = (hf_fixtures / "listing_papers_2024-08-01.html").read_bytes()
    assert by_path.content == captured == by_query.content
    assert by_path.headers["content-type"].startswith("text/html")
    # Only the page was captured for that day: the API answers the papers embedded in it.
    assert [item["paper"]["id"] for item in api][:2] == ["2407.21783", "2407.21705"] and len(api) == 13


def test_faults_are_served_in_order_then_it_recovers_and_every_request_is_logged(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [429, Fault(status=503, headers={"Retry-After": "2"}), Fault(body=b"{}")])
    with httpx.Client(base_url=srv.base_url, headers={"User-Agent": "probe/1"}) as client:
        answers = [client.get(API_PATH, params={"date": "2026-08-21"}) for _ in range(4)]
        other = client.get("/papers/date/2024-08-01")
    assert [a.status_code for a in answers] == [429, 503, 200, 200]
    assert answers[1].headers["retry-after"] == "2"
    assert answers[2].json() == {} and len(answers[3].json()) == 17
    assert other.status_code == 200  # faults are per path
    assert [(r.path, r.status) for r in srv.requests] == [(API_PATH, s) for s in (429, 503, 200, 200)] + [
        ("/papers/date/2024-08-01", 200)
    ]
    assert srv.requests[0].headers["user-agent"] == "probe/1"
    assert srv.requests[0].query == {"date": "2026-08-21"}


def test_a_dropped_connection_gets_no_answer(srv: SnapshotServer) -> None:
    srv.fail(API_PATH, [Fault(drop=True)])
    with httpx.Client(base_url=srv.base_url) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get(API_PATH, params={"date": "2026-08-21"})


def test_a_captured_object_body_is_served_as_is(tmp_path: Path) -> None:
    (tmp_path / "api_daily_papers_date-2026-01-05.json").write_text(json.dumps({"error": "Invalid date"}))
    with SnapshotServer(tmp_path) as srv, httpx.Client(base_url=srv.base_url) as client:
        assert client.get(API_PATH, params={"date": "2026-01-05"}).json() == {"error": "Invalid date"}
