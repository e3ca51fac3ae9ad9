"""like:<arXiv id> in the rule language, and the matrix-product matcher, on hand-made vectors (no model).

The semantic matcher must agree with the obvious per-subscriber loop (cosine of every liked paper with
every window paper, compared with the threshold), whatever the rules around the like: are.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from semantic_helpers import without_extra

from digest.errors import RuleError
from digest.models import Paper, Rule
from digest.rules import BatchMatcher, parse_rule, validate_rules
from digest.rules.nodes import And, Like, Not, Or
from digest.rules.semantic import DIMENSIONS, Liked, SemanticIndex, from_bytes, to_bytes

__all__ = ["without_extra"]  # the fixture, used by name

DAY = date(2026, 3, 2)


def unit(*weights: float) -> np.ndarray:
    v = np.zeros(DIMENSIONS, dtype=np.float32)
    v[: len(weights)] = weights
    return (v / np.linalg.norm(v)).astype(np.float32)


def paper(pid: str, title: str, summary: str = "An abstract.", upvotes: int = 1) -> Paper:
    return Paper(id=pid, title=title, summary=summary, daily_date=DAY, upvotes=upvotes)


WINDOW = [
    paper("2603.00001", "Video diffusion at scale", "We scale diffusion models."),
    paper("2603.00002", "A survey of diffusion models", "This survey covers diffusion."),
    paper("2603.00003", "Agents that plan", "Language agents plan."),
    paper("2603.00004", "Protein folding", "Biology."),
]
# Paper 0 and 1 point the same way as the liked paper; 2 is at about 0.6; 3 is orthogonal.
VECTORS = [unit(1, 0.1), unit(1, 0.2), unit(0.6, 0.8), unit(0, 0, 1)]
LIKED = {"2510.12345": Liked("Diffusion Everywhere", unit(1, 0))}


def matcher(threshold: float = 0.55) -> BatchMatcher:
    return BatchMatcher(WINDOW, likes=SemanticIndex(VECTORS, LIKED, threshold))


def ids(m: BatchMatcher, query: str) -> list[str]:
    return [m.papers[i].id for i in m.match([Rule(query)])]


def test_like_parses_to_its_own_node_and_drops_an_arxiv_version() -> None:
    q = parse_rule("like:2510.12345v3")
    assert q.root == Like("2510.12345", 0)
    assert q.likes == (Like("2510.12345", 0),)
    assert q.terms == ()


def test_like_combines_with_the_rest_of_the_language() -> None:
    q = parse_rule("like:2510.12345 -survey")
    assert isinstance(q.root, And) and isinstance(q.root.children[1], Not)
    q = parse_rule("like:2510.1234 OR diffusion")
    assert isinstance(q.root, Or) and q.root.children[0] == Like("2510.1234", 0)
    assert [like.paper_id for like in parse_rule("like:2510.00001 OR (like:2510.00002 agents)").likes] == [
        "2510.00001",
        "2510.00002",
    ]


@pytest.mark.parametrize(
    ("rule", "problem", "caret"),
    [
        ("like:diffusion", "like: needs an arXiv id", 5),
        ("like:", "like: needs an arXiv id", 5),
        ("title:(like:2510.12345)", "'like:' cannot be used inside 'title:(...)'", 7),
        ("-like:2510.12345", "only exclusions", 0),
        ("similar:2510.12345", "did you mean 'like'?", 0),
    ],
)
def test_bad_like_rules_get_a_caret_under_the_problem(rule: str, problem: str, caret: int) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(rule)
    assert problem in err.value.problem
    assert err.value.position == caret


def test_papers_at_or_above_the_threshold_match_and_the_others_do_not() -> None:
    assert ids(matcher(0.55), "like:2510.12345") == ["2603.00001", "2603.00002", "2603.00003"]
    assert ids(matcher(0.7), "like:2510.12345") == ["2603.00001", "2603.00002"]
    score = float(VECTORS[2] @ LIKED["2510.12345"].vector)
    # Exactly at the threshold is a match (cosine >= threshold).
    assert ids(matcher(score), "like:2510.12345") == ["2603.00001", "2603.00002", "2603.00003"]
    assert ids(matcher(np.nextafter(np.float32(score), np.float32(2))), "like:2510.12345") == [
        "2603.00001",
        "2603.00002",
    ]


def test_like_with_exclusions_and_or_behaves_like_any_other_term() -> None:
    m = matcher()
    assert ids(m, "like:2510.12345 -survey") == ["2603.00001", "2603.00003"]
    assert ids(m, "like:2510.12345 OR protein") == ["2603.00001", "2603.00002", "2603.00003", "2603.00004"]
    assert ids(m, "agents -like:2510.12345") == []
    assert ids(m, "folding -like:2510.12345") == ["2603.00004"]


def test_an_unknown_liked_paper_or_no_semantic_index_matches_nothing() -> None:
    assert ids(matcher(), "like:2509.99999") == []
    assert BatchMatcher(WINDOW).match([Rule("like:2510.12345 OR protein")]) == [3]


def test_a_paper_without_an_embedding_is_never_similar() -> None:
    m = BatchMatcher(WINDOW, likes=SemanticIndex([None, *VECTORS[1:]], LIKED, 0.0))
    assert "2603.00001" not in ids(m, "like:2510.12345")


def test_the_explanation_names_the_liked_paper_and_the_similarity() -> None:
    m = matcher()
    chosen = {mp.paper.id: mp for mp in m.select([Rule("like:2510.12345 OR diffusion")])}
    score = float(VECTORS[2] @ LIKED["2510.12345"].vector)
    assert chosen["2603.00003"].why[0].describe() == f"similar to «Diffusion Everywhere» ({score:.2f})"
    first = float(VECTORS[0] @ LIKED["2510.12345"].vector)
    assert chosen["2603.00001"].why[0].describe() == (
        f"similar to «Diffusion Everywhere» ({first:.2f}), diffusion in title, abstract"
    )


def test_embeddings_round_trip_through_their_stored_bytes() -> None:
    v = unit(0.3, -0.2, 0.9)
    blob = to_bytes(v)
    assert len(blob) == DIMENSIONS * 4
    assert np.array_equal(from_bytes(blob), v)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[np.ndarray], dict[str, Liked], list[list[str]], float]:
    n_papers = draw(st.integers(1, 12))
    n_liked = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    raw = rng.normal(size=(n_papers + n_liked, 8)).astype(np.float32)
    vectors = [unit(*row) for row in raw]
    liked = {f"2501.{k:05d}": Liked(f"liked {k}", vectors[n_papers + k]) for k in range(n_liked)}
    pool = [*liked, "2501.99999"]  # one liked id that is unknown
    subs = draw(st.lists(st.lists(st.sampled_from(pool), min_size=1, max_size=3), min_size=1, max_size=20))
    threshold = draw(st.floats(-0.5, 0.9))
    return vectors[:n_papers], liked, subs, threshold


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_the_matrix_matcher_equals_a_naive_loop_per_subscriber(
    case: tuple[list[np.ndarray], dict[str, Liked], list[list[str]], float],
) -> None:
    vectors, liked, subs, threshold = case
    papers = [paper(f"2602.{i:05d}", f"paper {i}") for i in range(len(vectors))]
    m = BatchMatcher(papers, likes=SemanticIndex(vectors, liked, threshold))
    for likes in subs:
        rules = [Rule(f"like:{pid}") for pid in likes]
        expected = [
            i
            for i, vec in enumerate(vectors)
            if any(
                pid in liked and float(np.dot(liked[pid].vector, vec)) >= np.float32(threshold)
                for pid in likes
            )
        ]
        assert m.match(rules) == expected


def test_like_rules_are_refused_when_saved_without_the_extra(without_extra: None) -> None:
    with pytest.raises(RuleError) as err:
        validate_rules(["diffusion", "like:2510.12345 -survey"])
    assert "pip install 'paper-digest[semantic]'" in err.value.problem
    assert err.value.problem.startswith("rule 2: like: rules need the optional 'semantic' extra")
    assert "\n" not in err.value.problem
    # Everything else is unchanged.
    assert validate_rules(["diffusion", "title:agents -survey"]) == ["diffusion", "title:agents -survey"]


def test_like_rules_are_accepted_when_the_extra_is_installed() -> None:
    assert validate_rules(["like:2510.12345 -survey"]) == ["like:2510.12345 -survey"]
