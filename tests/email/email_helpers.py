"""Test helpers for the digest email: papers from the captured HF days, hand-made explanations.

The mapping from the HF JSON is deliberately minimal (the real one lives in digest/sources): enough
fields to exercise every part of the email.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

from digest.models import Explanation, MatchedPaper, Paper, Rule, Span
from digest.render import DigestContext

HF_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "hf"
FIXTURE_DAYS = ("2024-05-27", "2025-10-15", "2026-07-27", "2026-08-21")


def load_day(day: str) -> list[Paper]:
    """The papers of one captured day, mapped to Paper."""
    items = json.loads((HF_FIXTURES / f"api_daily_papers_date-{day}.json").read_text("utf-8"))
    papers = []
    for item in items:
        p = item["paper"]
        org = item.get("organization") or p.get("organization") or {}
        papers.append(
            Paper(
                id=p["id"],
                title=" ".join(p["title"].split()),
                summary=" ".join(p["summary"].split()),
                daily_date=date.fromisoformat(day),
                authors=tuple(a["name"] for a in p.get("authors", [])),
                upvotes=int(p.get("upvotes", 0)),
                num_comments=int(item.get("numComments", 0)),
                published_at=datetime.fromisoformat(p["publishedAt"].replace("Z", "+00:00")),
                ai_summary=p.get("ai_summary"),
                ai_keywords=tuple(p.get("ai_keywords", ())),
                github_repo=p.get("githubRepo"),
                github_stars=p.get("githubStars"),
                project_page=p.get("projectPage"),
                organization=org.get("fullname") or org.get("name"),
                organization_handle=org.get("name"),
            )
        )
    return papers


def explain(paper: Paper, rule: Rule, words: tuple[str, ...]) -> Explanation | None:
    """A hand-made explanation: which of ``words`` occur (whole word, case-insensitive) in title/abstract."""
    spans: list[Span] = []
    fields: list[str] = []
    terms: list[str] = []
    for field, name in (("title", "title"), ("summary", "abstract"), ("ai_summary", "abstract")):
        text = getattr(paper, field) or ""
        for word in words:
            for m in re.finditer(rf"\b{re.escape(word)}(?:s|es)?\b", text, re.IGNORECASE):
                spans.append(Span(field, m.start(), m.end()))
                if name not in fields:
                    fields.append(name)
                if word not in terms:
                    terms.append(word)
    if not spans:
        return None
    return Explanation(rule=rule.label, terms=tuple(terms), fields=tuple(fields), spans=tuple(spans))


def match(papers: list[Paper], rules: list[tuple[Rule, tuple[str, ...]]]) -> list[MatchedPaper]:
    """Each paper that any rule's words hit, with one explanation per matching rule (first rule first)."""
    out = []
    for paper in papers:
        why = tuple(e for rule, words in rules if (e := explain(paper, rule, words)) is not None)
        if why:
            out.append(MatchedPaper(paper=paper, why=why))
    return out


def context(
    papers: list[MatchedPaper],
    rules: list[Rule],
    *,
    run_date: date,
    recipient: str = "ada@example.org",
    name: str | None = "Ada",
    max_papers: int = 30,
) -> DigestContext:
    return DigestContext(
        recipient=recipient,
        name=name,
        run_date=run_date,
        papers=papers,
        rules=rules,
        max_papers=max_papers,
        manage_url="https://digest.example.org/manage/TOKEN-manage",
        unsubscribe_url="https://digest.example.org/u/TOKEN-unsub",
        postal_address="Paper Digest\n1 Example Street\n75001 Paris, France",
        title="Paper Digest",
        base_url="https://huggingface.co",
    )
