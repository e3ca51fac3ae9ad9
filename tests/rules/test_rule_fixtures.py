"""Rules over the real captured Hugging Face papers (../shared/fixtures/hf)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rules_helpers import oracle_ids, papers_from_hf_json

from digest.models import Paper, Rule
from digest.rules import BatchMatcher, select_papers

REALISTIC = [
    '"reinforcement learning"',
    "org:zai-org",
    'keyword:"diffusion large language models"',
    "title:agent*",
    'author:"Tomas Pfister"',
    "diffusion upvotes:>=10",
    "benchmark -survey",
    "mllm* OR multimodal",
    "(video OR image) generation -title:survey",
    "LLM agents",
    "upvotes:>=50",
]


@pytest.fixture(scope="module")
def real_papers(hf_fixtures: Path) -> list[Paper]:
    papers: list[Paper] = []
    for path in sorted(hf_fixtures.glob("api_daily_papers_*.json")):
        papers.extend(papers_from_hf_json(path))
    assert len(papers) == 70
    return papers


def test_the_inverted_matcher_agrees_with_the_oracle_on_real_papers(real_papers: list[Paper]) -> None:
    matcher = BatchMatcher(real_papers)
    for rule in REALISTIC:
        assert {real_papers[i].id for i in matcher.match([rule])} == oracle_ids(real_papers, rule), rule


def test_known_real_matches(real_papers: list[Paper]) -> None:
    def ids(rule: str) -> list[str]:
        return [m.paper.id for m in select_papers(real_papers, [Rule(rule)])]

    # org matches the HF handle "zai-org" (a phrase "zai org") as well as the display name "Z.ai".
    assert ids("org:zai-org") == ["2510.11683"]
    assert ids('org:"z ai"') == ["2510.11683"]
    assert ids('keyword:"diffusion large language models"') == ["2510.11683"]
    assert ids('author:"Tomas Pfister"') == ["2608.19880"]
    assert len(ids('"reinforcement learning"')) == 10


def test_a_real_digest_is_ordered_by_upvotes_and_explains_every_paper(real_papers: list[Paper]) -> None:
    selected = select_papers(real_papers, [Rule("diffusion", name="diffusion"), Rule("title:agent*")])
    upvotes = [m.paper.upvotes for m in selected]
    assert upvotes == sorted(upvotes, reverse=True)
    assert all(m.why for m in selected)
    for m in selected:
        for why in m.why:
            for span in why.spans:
                text = {"title": m.paper.title, "summary": m.paper.summary, "ai_summary": m.paper.ai_summary}
                highlighted = (text[span.field] or "")[span.start : span.end].casefold()
                assert highlighted.startswith(("diffusion", "agent")), highlighted
