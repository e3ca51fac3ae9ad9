"""Why a rule matched a paper: the terms that made it match, in which fields, and what to highlight.

Only the terms that actually carry the match are reported: for ``(a b) OR c`` on a paper with ``a`` and
``c`` but no ``b``, the explanation names ``c`` alone; excluded terms (``-survey``) are never named.
"""

from __future__ import annotations

from digest.models import Explanation, Paper, Rule, Span
from digest.rules.nodes import And, Compare, Node, Not, Or, Query, Term
from digest.rules.oracle import evaluate, phrase_at, term_in_segment, term_matches
from digest.rules.parser import parse_cached
from digest.rules.text import FIELDS, PaperText, Segment, cached_paper_text


def _witnesses(node: Node, paper: PaperText) -> tuple[bool, list[Term]]:
    """Evaluate ``node`` and collect the terms that make it true."""
    if isinstance(node, Term):
        hit = term_matches(node, paper)
        return hit, [node] if hit else []
    if isinstance(node, Compare):
        return node.test(paper.upvotes), []
    if isinstance(node, Not):
        return not evaluate(node.child, paper), []
    if isinstance(node, And):
        found: list[Term] = []
        for child in node.children:
            ok, terms = _witnesses(child, paper)
            if not ok:
                return False, []
            found.extend(terms)
        return True, found
    assert isinstance(node, Or)
    any_ok = False
    found = []
    for child in node.children:
        ok, terms = _witnesses(child, paper)
        if ok:
            any_ok = True
            found.extend(terms)
    return any_ok, found


def _spans(term: Term, seg: Segment) -> list[Span]:
    n = len(term.words)
    return [
        Span(seg.source, seg.starts[i], seg.ends[i + n - 1])
        for i in range(len(seg.tokens) - n + 1)
        if phrase_at(seg, i, term.words)
    ]


def _merge(spans: list[Span]) -> tuple[Span, ...]:
    """Sort spans and merge overlapping ones, per field, so a renderer can highlight left to right."""
    order = {"title": 0, "summary": 1, "ai_summary": 2}
    out: list[Span] = []
    for span in sorted(spans, key=lambda s: (order.get(s.field, 3), s.start, s.end)):
        last = out[-1] if out else None
        if last is not None and last.field == span.field and span.start < last.end:
            out[-1] = Span(last.field, last.start, max(last.end, span.end))
        else:
            out.append(span)
    return tuple(out)


def explain_query(query: Query, paper: PaperText, label: str) -> Explanation | None:
    """The Explanation of ``query`` on a tokenised paper, or None when it does not match."""
    ok, terms = _witnesses(query.root, paper)
    if not ok:
        return None
    names: list[str] = []
    fields: set[str] = set()
    spans: list[Span] = []
    seen: set[Term] = set()
    for term in terms:
        if term in seen:
            continue
        seen.add(term)
        if term.text not in names:
            names.append(term.text)
        for field in term.fields:
            segs = paper.fields[field]
            if any(term_in_segment(term, s) for s in segs):
                fields.add(field)
            if field in ("title", "abstract"):
                for seg in segs:
                    spans.extend(_spans(term, seg))
        # The AI summary is not searched, but it restates the abstract: highlight the same words there.
        if "abstract" in term.fields:
            spans.extend(_spans(term, paper.ai_summary))
    return Explanation(
        rule=label,
        terms=tuple(names),
        fields=tuple(f for f in FIELDS if f in fields),
        spans=_merge(spans),
    )


def explain(paper: Paper, rule: Rule) -> Explanation | None:
    """Why ``rule`` matches ``paper`` (None when it does not). Raises RuleError for an invalid rule."""
    return explain_query(parse_cached(rule.query), cached_paper_text(paper), rule.label)
