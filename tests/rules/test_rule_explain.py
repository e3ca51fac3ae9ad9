"""Explanations: which rule, which words, in which fields, and highlight spans on the right characters."""

from __future__ import annotations

from rules_helpers import make_paper

from digest.models import Explanation, Rule, Span
from digest.rules import explain

PAPER = make_paper(
    "2510.00001",
    "Scaling Large Language Models for Few-Shot Reasoning",
    "We study large\nlanguage models, not a survey. Straße.",
    ai_summary="Large language models reason few-shot.",
    ai_keywords=["reinforcement learning"],
    authors=["Yann LeCun"],
    organization="AI at Meta",
    organization_handle="facebook",
    upvotes=12,
)


def _texts(why: Explanation) -> list[tuple[str, str]]:
    source = {"title": PAPER.title, "summary": PAPER.summary, "ai_summary": PAPER.ai_summary or ""}
    return [(s.field, source[s.field][s.start : s.end]) for s in why.spans]


def test_spans_cover_the_whole_phrase_including_hyphens_and_line_breaks() -> None:
    why = explain(PAPER, Rule('"large language model" few-shot', name="LLMs"))
    assert why is not None
    assert why.rule == "LLMs"
    assert why.terms == ("large language model", "few-shot")
    assert why.fields == ("title", "abstract")
    assert _texts(why) == [
        ("title", "Large Language Models"),
        ("title", "Few-Shot"),
        ("summary", "large\nlanguage models"),
        ("ai_summary", "Large language models"),
        ("ai_summary", "few-shot"),
    ]
    assert why.describe() == "large language model, few-shot in title, abstract"


def test_only_the_terms_that_carry_the_match_are_named_never_exclusions() -> None:
    why = explain(PAPER, Rule("(scaling zebra) OR reasoning -giraffe"))
    assert why is not None
    assert why.terms == ("reasoning",)
    assert _texts(why) == [("title", "Reasoning")]


def test_a_field_restricted_term_is_highlighted_only_in_that_field() -> None:
    why = explain(PAPER, Rule("title:large"))
    assert why is not None
    assert why.fields == ("title",)
    assert _texts(why) == [("title", "Large")]


def test_overlapping_highlights_are_merged_and_offsets_follow_the_original_unicode_text() -> None:
    why = explain(PAPER, Rule('language OR "large language" OR strasse'))
    assert why is not None
    assert ("summary", "Straße") in _texts(why)
    assert ("title", "Large Language") in _texts(why)
    assert ("title", "Language") not in _texts(why)


def test_author_keyword_org_and_upvotes_matches_are_explained_without_spans() -> None:
    why = explain(PAPER, Rule('author:lecun keyword:"reinforcement learning" org:meta upvotes:>=10'))
    assert why == Explanation(
        rule='author:lecun keyword:"reinforcement learning" org:meta upvotes:>=10',
        terms=("lecun", "reinforcement learning", "meta"),
        fields=("keyword", "author", "org"),
        spans=(),
    )
    alone = explain(PAPER, Rule("upvotes:>=10"))
    assert alone is not None and alone.terms == () and alone.describe() == "upvotes:>=10"


def test_a_rule_that_does_not_match_has_no_explanation() -> None:
    assert explain(PAPER, Rule("diffusion")) is None
    assert explain(PAPER, Rule("large -survey")) is None


def test_span_field_names_are_paper_attributes() -> None:
    why = explain(PAPER, Rule("study"))
    assert why is not None and why.spans == (Span("summary", 3, 8),)
