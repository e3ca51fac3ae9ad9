"""Why a rule matched a paper: the terms that made it match, in which fields, and what to highlight.

Only the terms that actually carry the match are reported: for ``(a b) OR c`` on a paper with ``a`` and
``c`` but no ``b``, the explanation names ``c`` alone; excluded terms (``-survey``) are never named.
"""

from __future__ import annotations

from collections.abc import Callable

from digest.models import Explanation, Paper, Rule, Span
from digest.rules.nodes import And, Compare, Like, Node, Not, Or, Query, Term
from digest.rules.oracle import evaluate, phrase_at
from digest.rules.parser import parse_cached
from digest.rules.text import FIELDS, PaperText, Segment, cached_paper_text

Holds = Callable[[Node], bool]
DescribeLike = Callable[[Like], str]
Witness = Term | Like


def _witnesses(node: Node, holds: Holds) -> tuple[bool, list[Witness]]:
    """Evaluate ``node`` (``holds`` answers for one node) and collect the terms that make it true."""
    if isinstance(node, Term | Like):
        hit = holds(node)
        return hit, [node] if hit else []
    if isinstance(node, Compare | Not):
        return holds(node), []
    if isinstance(node, And):
        found: list[Witness] = []
        for child in node.children:
            ok, terms = _witnesses(child, holds)
            if not ok:
                return False, []
            found.extend(terms)
        return True, found
    assert isinstance(node, Or)
    any_ok = False
    found = []
    for child in node.children:
        ok, terms = _witnesses(child, holds)
        if ok:
            any_ok = True
            found.extend(terms)
    return any_ok, found


def _starts(term: Term, seg: Segment) -> list[int]:
    """Token indices where ``term`` starts in ``seg`` (a first-word filter, then the full check)."""
    first, prefix = term.words[0]
    tokens = seg.tokens
    if prefix:
        found = [i for i, t in enumerate(tokens) if t.startswith(first)]
    else:
        forms = {first, first + "s", first + "es"}
        found = [i for i, t in enumerate(tokens) if t in forms]
    if len(term.words) > 1:
        found = [i for i in found if phrase_at(seg, i, term.words)]
    return found


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


def explain_query(
    query: Query,
    paper: PaperText,
    label: str,
    holds: Holds | None = None,
    describe_like: DescribeLike | None = None,
) -> Explanation | None:
    """The Explanation of ``query`` on a tokenised paper, or None when it does not match.

    ``holds(node)`` says whether a node matches this paper; by default the AST is walked (the oracle),
    and the BatchMatcher passes its bitsets instead. ``describe_like`` words a matching ``like:``
    ("similar to «Title» (0.71)"); only the BatchMatcher knows the similarities.
    """
    if holds is None:

        def holds(node: Node) -> bool:
            return evaluate(node, paper)

    ok, terms = _witnesses(query.root, holds)
    if not ok:
        return None
    names: list[str] = []
    fields: set[str] = set()
    spans: list[Span] = []
    for term in dict.fromkeys(terms):
        if isinstance(term, Like):
            names.append(describe_like(term) if describe_like else f"like:{term.paper_id}")
            continue
        if term.text not in names:
            names.append(term.text)
        n = len(term.words)
        for field in term.fields:
            for seg in paper.fields[field]:
                starts = _starts(term, seg)
                if starts:
                    fields.add(field)
                    if seg.source:
                        spans.extend(Span(seg.source, seg.starts[i], seg.ends[i + n - 1]) for i in starts)
        # The AI summary is not searched, but it restates the abstract: highlight the same words there.
        if "abstract" in term.fields:
            seg = paper.ai_summary
            spans.extend(Span(seg.source, seg.starts[i], seg.ends[i + n - 1]) for i in _starts(term, seg))
    return Explanation(
        rule=label,
        terms=tuple(names),
        fields=tuple(f for f in FIELDS if f in fields),
        spans=_merge(spans),
    )


def explain(paper: Paper, rule: Rule) -> Explanation | None:
    """Why ``rule`` matches ``paper`` (None when it does not). Raises RuleError for an invalid rule."""
    return explain_query(parse_cached(rule.query), cached_paper_text(paper), rule.label)
