"""The inverted BatchMatcher agrees with the straightforward AST evaluation on generated rules and papers,
and a rule has an explanation for exactly the papers it matches."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rules_helpers import make_paper

from digest.errors import RuleError
from digest.models import Paper, Rule
from digest.rules import BatchMatcher, evaluate, explain_query, paper_text, parse_rule

# A small vocabulary so that generated rules and papers actually share words, plurals and prefixes.
VOCAB = ["model", "models", "modeles", "mode", "agent", "agents", "agentic", "box", "boxes", "few", "shot"]
VOCAB += ["large", "language", "gpt", "4o", "diffusion", "video", "or", "and", "Straße", "strasse", "Köln"]
VOCAB += ["GPT4", "2024", "Agent", "MODELS", "w0", "title"]
SEPARATORS = [" ", " ", " ", "-", "\n", ", ", ": ", "/"]

words = st.sampled_from(VOCAB)
text = st.lists(st.tuples(words, st.sampled_from(SEPARATORS)), max_size=12).map(
    lambda pairs: "".join(w + s for w, s in pairs).strip()
)


@st.composite
def papers(draw: st.DrawFn) -> list[Paper]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        org = draw(st.sampled_from([None, "Large Agent Lab", "gpt-4o"]))
        out.append(
            make_paper(
                f"2501.{i:05d}",
                draw(text),
                draw(text),
                ai_keywords=draw(st.lists(text, max_size=3)),
                authors=draw(st.lists(text, max_size=3)),
                organization=org,
                organization_handle=draw(st.sampled_from([None, "agents"])) if org else None,
                upvotes=draw(st.integers(0, 30)),
            )
        )
    return out


def _word(draw: st.DrawFn) -> str:
    w = draw(words)
    if draw(st.integers(0, 4)) == 0:
        w = w[: draw(st.integers(1, len(w)))] + "*"
    return w


@st.composite
def leaf(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return _word(draw)
    if kind == 4:
        return f"{draw(words)}-{_word(draw)}"
    if kind == 5:
        return '"' + " ".join(_word(draw) for _ in range(draw(st.integers(1, 3)))) + '"'
    if kind == 6:
        field = draw(st.sampled_from(["title", "abstract", "keyword", "author", "org"]))
        return f"{field}:{_word(draw)}"
    if kind == 7 and draw(st.booleans()):
        return f"{draw(words)}-{draw(st.sampled_from(['title', 'gpt4', 'x']))}:{draw(words)}"  # not fields
    if kind == 7:
        return f"upvotes:{draw(st.sampled_from(['', '>', '>=', '<', '<=', '=']))}{draw(st.integers(0, 30))}"
    return " ".join(draw(words) for _ in range(draw(st.integers(1, 4))))  # plain: the matcher's fast path


rules = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(" ".join),
        st.tuples(inner, inner).map(" AND ".join),
        st.tuples(inner, inner).map(" OR ".join),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} -{ab[1]}" if ab[1][0] != "-" else ab[0]),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} NOT {ab[1]}"),
        inner.map(lambda r: f"({r})"),
        st.tuples(st.sampled_from(["title", "abstract", "keyword"]), inner).map(
            lambda fr: f"{fr[0]}:({fr[1]})" if ":" not in fr[1] else fr[1]
        ),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(papers(), st.lists(rules, min_size=1, max_size=4))
def test_the_inverted_matcher_equals_the_oracle(day: list[Paper], texts: list[str]) -> None:
    queries = []
    for t in texts:
        try:
            queries.append(parse_rule(t))
        except RuleError:
            assume(False)
    matcher = BatchMatcher(day)
    tokenised = [paper_text(p) for p in day]
    union: set[int] = set()
    for q in queries:
        expected = {i for i, pt in enumerate(tokenised) if evaluate(q.root, pt)}
        assert set(matcher.match([q.text])) == expected, q.text
        assert set(matcher.match([q])) == expected, q.text
        # Explanations exist for exactly the matched papers, and name only terms of the rule.
        for i, pt in enumerate(tokenised):
            why = explain_query(q, pt, q.text)
            assert (why is not None) == (i in expected)
            if why is not None:
                assert set(why.terms) <= {t.text for t in q.terms}
                # The matcher's bitset-driven explanation is the same as the AST walk's.
                assert matcher.explain(Rule(q.text, name="named"), i) == replace(why, rule="named")
        union |= expected
    assert set(matcher.match(texts)) == union
