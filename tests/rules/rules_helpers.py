"""Helpers for the rule tests: Paper objects built directly (and from the captured HF JSON)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from digest.models import Paper
from digest.rules import BatchMatcher, evaluate, paper_text, parse_rule


def make_paper(pid: str, title: str = "", summary: str = "", **kw: Any) -> Paper:
    """A Paper with only what a rule test cares about."""
    kw.setdefault("daily_date", date(2025, 10, 15))
    for key in ("authors", "ai_keywords"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return Paper(id=pid, title=title, summary=summary, **kw)


def papers_from_hf_json(path: Path) -> list[Paper]:
    """A minimal mapping of an HF daily_papers JSON array to Papers (the real one lives in digest.sources)."""
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        p = item["paper"]
        org = item.get("organization") or p.get("organization") or {}
        out.append(
            make_paper(
                p["id"],
                " ".join(p["title"].split()),
                " ".join(p["summary"].split()),
                authors=[a["name"] for a in p.get("authors", [])],
                upvotes=p.get("upvotes", 0),
                ai_summary=p.get("ai_summary"),
                ai_keywords=p.get("ai_keywords", []),
                organization=org.get("fullname"),
                organization_handle=org.get("name"),
            )
        )
    return out


def oracle_ids(papers: list[Paper], rule: str) -> set[str]:
    """The ids the straightforward AST evaluation selects."""
    query = parse_rule(rule)
    return {p.id for p in papers if evaluate(query.root, paper_text(p))}


def batch_ids(papers: list[Paper], rule: str) -> set[str]:
    """The ids the inverted BatchMatcher selects."""
    return {papers[i].id for i in BatchMatcher(papers).match([rule])}
