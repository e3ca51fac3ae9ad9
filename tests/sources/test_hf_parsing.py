"""Parsing the captured Hugging Face responses (API JSON and the listing page) into Papers."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.errors import SourceError
from digest.sources import papers_from_api_json, papers_from_file
from digest.sources.hf_html import parse_listing
from digest.sources.http import parse_retry_after
from digest.sources.schema import parse_items

EXPECTED_COUNTS = {
    "api_daily_papers_date-2024-05-27.json": 13,
    "api_daily_papers_date-2025-10-15.json": 26,
    "api_daily_papers_date-2026-07-27.json": 14,
    "api_daily_papers_date-2026-08-21.json": 17,
}


def _load(hf_fixtures: Path, name: str) -> Any:
    return json.loads((hf_fixtures / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED_COUNTS.items()))
def test_every_captured_api_day_parses_completely(hf_fixtures: Path, name: str, count: int) -> None:
    day = date.fromisoformat(name.removeprefix("api_daily_papers_date-").removesuffix(".json"))
    papers, skipped = parse_items(_load(hf_fixtures, name), url=name, day=day)
    assert (len(papers), skipped) == (count, 0)
    assert all(p.daily_date == day for p in papers)
    for p in papers:
        assert p.title and "\n" not in p.title and "  " not in p.title
        assert p.summary and "\n" not in p.summary and "  " not in p.summary
        assert p.authors and all(a.strip() == a and a for a in p.authors)
        assert p.url == f"https://huggingface.co/papers/{p.id}"
        assert p.thumbnail_url is None or p.thumbnail_url.startswith("https://")


def test_the_current_schema_fills_every_paper_field(hf_fixtures: Path) -> None:
    papers = papers_from_api_json(_load(hf_fixtures, "api_daily_papers_date-2026-08-21.json"))
    first = papers[0]
    assert first.id == "2608.19880"
    assert first.title == "EnvHarness: Awakening Static Worlds for Agent Learning"
    assert first.daily_date == date(2026, 8, 21)
    assert first.upvotes == 163
    assert first.num_comments == 1
    assert first.published_at == datetime(2026, 8, 20, tzinfo=UTC)
    assert first.authors[:2] == ("Chengsong Huang", "Zifeng Wang") and len(first.authors) == 17
    assert first.ai_summary is not None and first.ai_summary.startswith("EnvHarness and EnvRigger")
    assert first.ai_keywords[:2] == ("LLM agents", "Environment Harness")
    assert (first.github_repo, first.github_stars) == ("https://github.com/google-research/envharness", 8)
    assert first.project_page == "https://envharness.com/"
    assert (
        first.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2608.19880.png"
    )
    assert (first.organization, first.organization_handle) == ("Google", "google")
    assert first.arxiv_url == "https://arxiv.org/abs/2608.19880"
    assert first.pdf_url == "https://arxiv.org/pdf/2608.19880"
    assert sum(p.ai_summary is not None for p in papers) == 16


def test_arxiv_line_wraps_are_collapsed_and_org_comes_from_the_item(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2025-10-15.json")
    assert "\n" in data[0]["paper"]["title"]  # the capture really has the wrap
    papers = papers_from_api_json(data)
    first = papers[0]
    assert first.title == (
        "Advancing End-to-End Pixel Space Generative Modeling via Self-supervised Pre-training"
    )
    assert first.summary.startswith(
        "Pixel-space generative models are often more difficult to train and generally underperform"
    )
    assert (first.organization, first.organization_handle) == ("AMAP-ML", "GD-ML")
    assert (first.upvotes, first.num_comments, first.github_stars) == (67, 2, 48)
    assert sum(p.ai_summary is not None for p in papers) == 7
    assert sum(p.organization is not None for p in papers) == 21


def test_a_day_without_ai_fields_leaves_them_empty(hf_fixtures: Path) -> None:
    papers = papers_from_api_json(_load(hf_fixtures, "api_daily_papers_date-2026-07-27.json"))
    assert len(papers) == 14
    assert all(p.ai_summary is None and p.ai_keywords == () for p in papers)
    assert all(p.daily_date == date(2026, 7, 27) for p in papers)


def test_the_2024_schema_takes_the_requested_day_and_media_url(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2024-05-27.json")
    papers = papers_from_api_json(data, day=date(2024, 5, 27))
    first = papers[0]
    assert first.id == "2405.15738"
    assert first.title == "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    assert first.upvotes == 32 and first.num_comments == 3
    assert (
        first.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2405.15738.png"
    )
    assert first.authors[0] == "Chunjiang Ge"
    assert first.organization is None and first.ai_summary is None and first.github_repo is None
    assert all(p.daily_date == date(2024, 5, 27) for p in papers)


def test_the_2024_schema_without_a_day_uses_the_listing_timestamp(hf_fixtures: Path) -> None:
    papers = papers_from_api_json(_load(hf_fixtures, "api_daily_papers_date-2024-05-27.json"))
    assert {p.daily_date for p in papers} == {date(2024, 5, 27)}


def test_the_2024_listing_page_carries_the_same_items(hf_fixtures: Path) -> None:
    html = (hf_fixtures / "listing_papers_2024-08-01.html").read_text(encoding="utf-8")
    listing = parse_listing(html, url="page")
    assert listing.day == date(2024, 8, 1)
    papers, skipped = parse_items(listing.items, url="page", day=listing.day)
    assert (len(papers), skipped) == (13, 0)
    llama = papers[0]
    assert (llama.id, llama.title, llama.upvotes, llama.num_comments) == (
        "2407.21783",
        "The Llama 3 Herd of Models",
        94,
        5,
    )
    assert llama.daily_date == date(2024, 8, 1)
    assert llama.authors[0] == "Abhimanyu Dubey"


def test_a_newer_listing_page_with_date_string_is_read(hf_fixtures: Path) -> None:
    items = _load(hf_fixtures, "api_daily_papers_date-2026-08-21.json")
    for item in items:
        del item["paper"]["submittedOnDailyAt"]  # so the page's dateString has to supply the day
    props = {"dateString": "2026-08-21", "dailyPapers": items, "periodType": "day", "isTrending": False}
    html = _page(props)
    listing = parse_listing(html, url="page")
    assert listing.day == date(2026, 8, 21)
    papers = papers_from_api_json(listing.items, day=listing.day)
    assert len(papers) == 17 and {p.daily_date for p in papers} == {date(2026, 8, 21)}


def _page(props: dict[str, Any], target: str = "DailyPapers") -> str:
    from html import escape

    return (
        "<!doctype html><html><body><main>"
        f'<div class="SVELTE_HYDRATER contents" data-target="{target}" data-props="{escape(json.dumps(props))}"></div>'
        "</main></body></html>"
    )


@pytest.mark.parametrize(
    ("html", "problem"),
    [
        ("<html><body><h1>Daily Papers</h1></body></html>", "no div.SVELTE_HYDRATER"),
        (_page({"dateString": "2026-08-21"}), "no dailyPapers list"),
        ('<div class="SVELTE_HYDRATER" data-target="DailyPapers" data-props="{oops"></div>', "not JSON"),
        (_page({"dailyPapers": []}, target="PaperList"), "no div.SVELTE_HYDRATER"),
    ],
)
def test_a_changed_listing_page_raises_naming_the_url(html: str, problem: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_listing(html, url="https://hf.example/papers/date/2026-08-21")
    assert err.value.url == "https://hf.example/papers/date/2026-08-21"
    assert problem in str(err.value)


def test_an_item_missing_its_title_is_skipped_and_counted(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2026-08-21.json")
    del data[3]["paper"]["title"]
    del data[3]["title"]
    papers, skipped = parse_items(data, url="u", day=None)
    assert (len(papers), skipped) == (16, 1)
    assert data[3]["paper"]["id"] not in {p.id for p in papers}


def test_most_items_failing_the_schema_means_the_site_changed(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2026-08-21.json")
    for item in data[:9]:
        item["paper"] = {"arxivId": item["paper"]["id"]}  # a renamed key, as a redesign would do
    with pytest.raises(SourceError) as err:
        parse_items(data, url="https://hf.example/api/daily_papers?date=2026-08-21", day=None)
    assert "9 of 17 items fail the schema" in str(err.value)
    assert err.value.url.startswith("https://hf.example/api/")


@pytest.mark.parametrize("body", [{"error": "Invalid date"}, None, "papers", 17])
def test_a_body_that_is_not_a_list_raises(body: object) -> None:
    with pytest.raises(SourceError, match="expected a JSON array"):
        papers_from_api_json(body, url="x")


def test_an_empty_list_is_an_empty_day() -> None:
    assert papers_from_api_json([]) == []


def test_only_http_links_and_real_arxiv_ids_are_kept(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2026-08-21.json")
    data[0]["paper"]["githubRepo"] = "javascript:alert(1)"
    data[0]["paper"]["projectPage"] = "https://ok.example/a b"
    data[0]["thumbnail"] = "//cdn.example/x.png"
    data[1]["paper"]["id"] = "../../admin"
    data[2]["paper"]["ai_summary"] = "  An\n  AI   summary \t"
    papers, skipped = parse_items(data, url="u", day=None)
    assert skipped == 1 and "../../admin" not in {p.id for p in papers}
    first = papers[0]
    assert (first.github_repo, first.project_page, first.thumbnail_url) == (None, None, None)
    assert papers[1].ai_summary == "An AI summary"


def test_null_optional_fields_are_tolerated(hf_fixtures: Path) -> None:
    data = _load(hf_fixtures, "api_daily_papers_date-2026-08-21.json")
    item = copy.deepcopy(data[0])
    item["paper"].update(ai_summary=None, ai_keywords=None, githubRepo=None, githubStars=None)
    item["organization"] = None
    item["paper"]["organization"] = None
    (paper,) = papers_from_api_json([item])
    assert paper.ai_keywords == () and paper.organization is None and paper.github_stars is None


def test_a_saved_api_file_reads_and_a_broken_one_names_the_file(hf_fixtures: Path, tmp_path: Path) -> None:
    assert len(papers_from_file(hf_fixtures / "api_daily_papers_date-2025-10-15.json")) == 26
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")
    with pytest.raises(SourceError, match=r"broken\.json"):
        papers_from_file(broken)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 8, 21, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Fri, 21 Aug 2026 08:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 21 Aug 2026 07:59:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
