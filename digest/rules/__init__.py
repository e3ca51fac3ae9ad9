"""Subscriber keyword rules (DESIGN.md section 5): parse, match in bulk, explain.

Public API:
    parse_rule(query) -> Query                     raises RuleError with a caret message
    validate_rules(queries) -> list[str]           cleaned rules, or RuleError ("rule N: ..." when several)
    select_papers(papers, rules) -> list[MatchedPaper]
    BatchMatcher(papers).match(rules) -> list[int] many subscribers over one day's papers
    explain(paper, rule) -> Explanation | None
"""

from __future__ import annotations

from digest.rules.explain import explain, explain_query
from digest.rules.matcher import BatchMatcher, bit_indices, select_papers
from digest.rules.nodes import And, Compare, Not, Or, Query, Term
from digest.rules.oracle import evaluate
from digest.rules.parser import MAX_CHARS, MAX_WORDS, parse_cached, parse_rule, validate_rules
from digest.rules.text import PaperText, paper_text, words

__all__ = [
    "MAX_CHARS",
    "MAX_WORDS",
    "And",
    "BatchMatcher",
    "Compare",
    "Not",
    "Or",
    "PaperText",
    "Query",
    "Term",
    "bit_indices",
    "evaluate",
    "explain",
    "explain_query",
    "paper_text",
    "parse_cached",
    "parse_rule",
    "select_papers",
    "validate_rules",
    "words",
]
