"""BatchMatcher.ranked: the planner's explanation-free ranking, shared by every subscriber with the same rules."""

from __future__ import annotations

import pytest
from rules_helpers import make_paper

from digest.errors import RuleError
from digest.models import Rule
from digest.rules import BatchMatcher

PAPERS = [
    make_paper("2501.4", "Graph agents", upvotes=3),
    make_paper("2501.1", "Graph diffusion", upvotes=9),
    make_paper("2501.3", "Agent benchmarks", upvotes=3),
    make_paper("2501.2", "Language models", upvotes=1),
]


@pytest.mark.parametrize("rules", [["graph"], ["agent*", "diffusion"], ["title:model*"], ["zebra"], []])
def test_ranked_is_select_without_the_explanations(rules: list[str]) -> None:
    matcher = BatchMatcher(PAPERS)
    as_rules = [Rule(q) for q in rules]
    ranked = matcher.ranked(as_rules)
    assert [m.paper.id for m in ranked] == [m.paper.id for m in matcher.select(as_rules)]
    assert all(m.why == () for m in ranked)


def test_most_upvoted_first_then_by_id() -> None:
    ranked = BatchMatcher(PAPERS).ranked([Rule("graph OR agent*")])
    assert [m.paper.id for m in ranked] == ["2501.1", "2501.3", "2501.4"]


def test_subscribers_with_the_same_rule_texts_share_one_ranking() -> None:
    matcher = BatchMatcher(PAPERS)
    first = matcher.ranked([Rule("graph", name="mine"), Rule("agent*")])
    again = matcher.ranked([Rule("graph", name="theirs"), Rule("agent*")])
    assert again is first, "memoised per rule set (names do not change the papers)"
    assert matcher.ranked([Rule("graph")]) is not first


def test_a_bad_rule_still_raises_and_is_not_memoised() -> None:
    matcher = BatchMatcher(PAPERS)
    for _ in range(2):
        with pytest.raises(RuleError):
            matcher.ranked([Rule("(graph")])
