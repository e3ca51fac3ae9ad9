"""The rule language, construct by construct: a table of rules x papers (DESIGN.md section 5).

Every row is checked three ways: the oracle (AST walked per paper), the inverted BatchMatcher, and
select_papers (the one-subscriber API), which must all select exactly the expected papers.
"""

from __future__ import annotations

import pytest
from rules_helpers import batch_ids, make_paper, oracle_ids

from digest.models import Rule
from digest.rules import BatchMatcher, select_papers

LLM = make_paper(
    "llm",
    "Scaling Large Language Models for Few-Shot Reasoning",
    "We study large\nlanguage models. Diffusion is not used here.",
    ai_keywords=["reinforcement learning", "chain-of-thought"],
    authors=["Yann LeCun", "Ada Lovelace"],
    organization="AI at Meta",
    organization_handle="facebook",
    upvotes=42,
)
DIFF = make_paper(
    "diff",
    "Diffusion Transformers for Video",
    "A diffusion model that generates videos with GPT-4o captions. Boxes and classes.",
    ai_keywords=["video generation", "diffusion models"],
    authors=["Jane Doe"],
    organization="Google",
    organization_handle="google",
    upvotes=7,
)
UNI = make_paper(
    "uni",
    "Über die Straße: MULTILINGUAL Naïve Bayes",
    "Café culture in Köln; a survey of ﬁne-tuning (with a ligature).",
    ai_keywords=["survey"],
    authors=["José Núñez"],
    upvotes=20,
)
AGENT = make_paper(
    "agent",
    "Agents that Learn",
    "An agent framework. Not a survey. We study the class of agentic systems with or without tools.",
    ai_keywords=["large language", "models"],
    authors=["Mary Smith", "John Smith"],
    upvotes=0,
)
PAPERS = [LLM, DIFF, UNI, AGENT]

TABLE: list[tuple[str, set[str]]] = [
    # whole words and the plural rule (+s, +es), never the reverse or a longer word
    ("model", {"llm", "diff", "agent"}),
    ("models", {"llm", "diff", "agent"}),
    ("box", {"diff"}),
    ("class", {"diff", "agent"}),
    ("agent", {"agent"}),
    ("agen", set()),
    ("learn", {"agent"}),  # "learning" is not a plural of "learn"
    # prefixes
    ("agent*", {"agent"}),
    ("agenti*", {"agent"}),
    ("diffus*", {"llm", "diff"}),
    ("zzz*", set()),
    # phrases: in a row, plural per word, across a line break, never across two keywords or fields
    ('"large language model"', {"llm"}),
    ('"language large"', set()),
    ('"large lang*"', {"llm", "agent"}),
    ('"reasoning we"', set()),
    ('keyword:"chain of thought"', {"llm"}),
    # hyphenated and mixed words are phrases
    ("few-shot", {"llm"}),
    ('"few shot"', {"llm"}),
    ("GPT-4o", {"diff"}),
    ("gpt 4o", {"diff"}),
    ("gpt4o", set()),
    ("chain-of-thought", {"llm"}),  # AI keywords are a default field
    ("keyword:chain-of-thought", {"llm"}),
    ("title:chain-of-thought", set()),
    # Unicode: case folding, NFKC, accents kept
    ("strasse", {"uni"}),
    ("STRASSE", {"uni"}),
    ("straße", {"uni"}),
    ("köln", {"uni"}),
    ("KÖLN", {"uni"}),
    ("koln", set()),
    ("naïve", {"uni"}),
    ("nai\u0308ve", {"uni"}),  # decomposed in the query
    ("naive", set()),
    ("café", {"uni"}),
    ("über", {"uni"}),
    ("fine-tuning", {"uni"}),  # the paper writes the ﬁ ligature
    ("multilingual", {"uni"}),
    ("Agent", {"agent"}),
    # implicit AND, explicit AND / OR / NOT / -, precedence and parentheses
    ("diffusion video", {"diff"}),
    ("diffusion AND video", {"diff"}),
    ("diffusion OR agent", {"llm", "diff", "agent"}),
    ("diffusion -video", {"llm"}),
    ("diffusion NOT video", {"llm"}),
    ("agent OR diffusion video", {"agent", "diff"}),
    ("(agent OR diffusion) video", {"diff"}),
    ("NOT survey agent", set()),
    ("model -(video OR survey)", {"llm"}),
    ("model NOT NOT video", {"diff"}),
    ("model AND -survey OR box", {"llm", "diff"}),
    # lower-case operators are words
    ("or", {"agent"}),
    ("with or without", {"agent"}),
    ("diffusion and video", {"diff"}),  # 'and' is a word: the summary says "Boxes and classes"
    ("agent and", set()),
    # fields
    ("title:diffusion", {"diff"}),
    ("abstract:diffusion", {"llm", "diff"}),
    ("keyword:diffusion", {"diff"}),
    ("title:(agent OR video)", {"diff", "agent"}),
    ("Title:Video", {"diff"}),
    ("agent -title:survey", {"agent"}),
    ("agent -abstract:survey", set()),
    ('author:"Yann LeCun"', {"llm"}),
    ("author:lecun", {"llm"}),
    ('author:"lecun ada"', set()),
    ('author:"smith john"', set()),
    ("lecun", set()),  # authors are not a default field
    ("org:meta", {"llm"}),
    ("org:facebook", {"llm"}),
    ("org:google", {"diff"}),
    ('org:"ai at meta"', {"llm"}),
    ("meta", set()),
    # upvotes
    ("upvotes:>=20", {"llm", "uni"}),
    ("upvotes:>20", {"llm"}),
    ("upvotes:<7", {"agent"}),
    ("upvotes:<=7", {"diff", "agent"}),
    ("upvotes:=20", {"uni"}),
    ("upvotes:20", {"llm", "uni"}),
    ("model upvotes:>10", {"llm"}),
    ("model -upvotes:>10", {"diff", "agent"}),
]


@pytest.mark.parametrize(("rule", "expected"), TABLE, ids=[r for r, _ in TABLE])
def test_each_construct_selects_exactly_the_expected_papers(rule: str, expected: set[str]) -> None:
    assert oracle_ids(PAPERS, rule) == expected
    assert batch_ids(PAPERS, rule) == expected
    assert {m.paper.id for m in select_papers(PAPERS, [Rule(rule)])} == expected


def test_one_matcher_answers_every_rule_of_the_table_from_its_shared_caches() -> None:
    matcher = BatchMatcher(PAPERS)
    for _ in range(2):  # the second round is served from the per-rule cache
        for rule, expected in TABLE:
            assert {PAPERS[i].id for i in matcher.match([rule])} == expected, rule


def test_a_subscriber_gets_the_union_of_their_rules_most_upvoted_first_with_one_why_per_rule() -> None:
    rules = [Rule("agent", name="agents"), Rule("diffusion"), Rule("model")]
    selected = select_papers(PAPERS, rules)
    assert [m.paper.id for m in selected] == ["llm", "diff", "agent"]
    by_id = {m.paper.id: [w.rule for w in m.why] for m in selected}
    assert by_id == {
        "llm": ["diffusion", "model"],
        "diff": ["diffusion", "model"],
        "agent": ["agents", "model"],
    }


def test_papers_with_equal_upvotes_are_ordered_by_id() -> None:
    papers = [make_paper(pid, "graph", upvotes=3) for pid in ("2501.3", "2501.1", "2501.2")]
    assert [m.paper.id for m in select_papers(papers, [Rule("graph")])] == ["2501.1", "2501.2", "2501.3"]


def test_no_rules_or_no_papers_select_nothing() -> None:
    assert select_papers(PAPERS, []) == []
    assert select_papers([], [Rule("model")]) == []
    assert BatchMatcher([]).match(["model", "upvotes:>=0"]) == []


def test_match_accepts_rule_objects_parsed_queries_and_plain_text() -> None:
    from digest.rules import parse_rule

    matcher = BatchMatcher(PAPERS)
    expected = [1]
    assert matcher.match([Rule("GPT-4o")]) == expected
    assert matcher.match([parse_rule("GPT-4o")]) == expected
    assert matcher.match(["GPT-4o"]) == expected


def test_the_rule_cache_stays_bounded_and_correct_after_it_is_reset() -> None:
    matcher = BatchMatcher(PAPERS, cache_size=3)
    for _ in range(3):
        for rule, expected in TABLE[:10]:
            assert {PAPERS[i].id for i in matcher.match([rule])} == expected
    assert len(matcher._rule_bits) <= 3


def test_the_plain_and_shape_fast_paths_are_taken_and_agree_with_the_parsed_tree() -> None:
    from digest.rules import parse_rule

    fast = BatchMatcher(PAPERS)
    for rule, _ in TABLE:
        assert fast.rule_bits(rule) == fast.node_bits(parse_rule(rule).root), rule
    # Plain-word rules skip the parser, other ASCII rules go through their shape's template,
    # and only non-ASCII rules are parsed one by one.
    assert fast.stats["plain"] >= 15
    assert fast.stats["shaped"] >= 40
    assert fast.stats["parsed"] == sum(not r.isascii() for r, _ in TABLE)


def test_rules_of_the_same_shape_share_one_template_but_keep_their_own_words() -> None:
    matcher = BatchMatcher(PAPERS)
    assert {PAPERS[i].id for i in matcher.match(["title:(agent OR video) -transformers"])} == {"agent"}
    assert {PAPERS[i].id for i in matcher.match(["Title:(Scaling OR bayes) -Transformers"])} == {"llm", "uni"}
    assert len(matcher._shapes) == 1
