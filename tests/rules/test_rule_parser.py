"""Parsing rules: the AST, every error message with its caret position, limits, and validate_rules."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import RuleError
from digest.rules import And, Compare, Not, Or, Term, parse_rule, validate_rules

DEFAULT = ("title", "abstract", "keyword")


def test_adjacent_words_are_anded_and_hyphenated_words_are_phrases() -> None:
    q = parse_rule("diffusion GPT-4o")
    assert q.root == And(
        (
            Term((("diffusion", False),), DEFAULT, "diffusion", 0),
            Term((("gpt", False), ("4o", False)), DEFAULT, "GPT-4o", 10),
        ),
        0,
    )


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    q = parse_rule("a OR NOT b c")
    assert isinstance(q.root, Or)
    left, right = q.root.children
    assert isinstance(left, Term) and left.text == "a"
    assert isinstance(right, And)
    assert isinstance(right.children[0], Not) and isinstance(right.children[1], Term)


def test_a_field_applies_to_every_word_of_its_group_and_a_phrase_keeps_prefix_stars() -> None:
    q = parse_rule('title:(agent OR "large lang*") upvotes:>=20')
    assert isinstance(q.root, And)
    group, cmp = q.root.children
    assert isinstance(group, Or)
    assert [t.fields for t in q.terms] == [("title",), ("title",)]
    assert q.terms[1].words == (("large", False), ("lang", True))
    assert q.terms[1].text == "large lang*"
    assert cmp == Compare(">=", 20, 31)


@pytest.mark.parametrize(
    ("rule", "op", "value"),
    [
        ("upvotes:>=5", ">=", 5),
        ("upvotes:>5", ">", 5),
        ("upvotes:<5", "<", 5),
        ("upvotes:<=5", "<=", 5),
        ("upvotes:=5", "=", 5),
        ("upvotes:5", ">=", 5),
        ("UPVOTES:05", ">=", 5),
    ],
)
def test_upvotes_comparisons_and_a_plain_number_means_at_least(rule: str, op: str, value: int) -> None:
    assert parse_rule(rule).root == Compare(op, value, 0)


def test_upvotes_alone_is_a_valid_rule_for_trending_papers() -> None:
    assert parse_rule("upvotes:>=50").terms == ()


def test_lower_case_operators_are_words_and_double_negation_cancels() -> None:
    assert [t.text for t in parse_rule("cats or dogs and not mice").terms] == [
        "cats",
        "or",
        "dogs",
        "and",
        "not",
        "mice",
    ]
    assert parse_rule("NOT NOT x").root == Term((("x", False),), DEFAULT, "x", 8)


def test_smart_quotes_from_phones_work_like_straight_quotes() -> None:
    assert parse_rule("“large language”").terms[0].words == (("large", False), ("language", False))


ERRORS: list[tuple[str, str, int]] = [
    ("", "empty rule — write at least one word to look for", 0),
    ("   ", "empty rule — write at least one word to look for", 0),
    ("(agent OR diffusion", "unclosed parenthesis", 0),
    ("a (b (c)", "unclosed parenthesis", 2),
    ("agent)", "unmatched ')' — there is no '(' before it", 5),
    ("()", "empty parentheses", 0),
    ('"large language', "unclosed quote", 0),
    ('x ""', "nothing to look for inside the quotes", 2),
    ('" - "', "nothing to look for inside the quotes", 0),
    ("titel:agent", "unknown field 'titel' — did you mean 'title'?", 0),
    ("agent authors:lecun", "unknown field 'authors' — did you mean 'author'?", 6),
    ("organization:google", "unknown field 'organization' — did you mean 'org'?", 0),
    ("zzz:agent", "unknown field 'zzz' — fields are title, abstract, keyword, author, org, upvotes, like", 0),
    ("upvotes:lots", "upvotes needs a number, like upvotes:>=20", 8),
    ("upvotes:>=", "upvotes needs a number, like upvotes:>=20", 10),
    ("upvotes:>=-3", "upvotes needs a number, like upvotes:>=20", 10),
    ("upvotes: 5", "upvotes needs a number, like upvotes:>=20", 8),
    ("upvotes:(5)", "upvotes needs a number, like upvotes:>=20", 8),
    ("a upvotes:=٣", "upvotes needs a number, like upvotes:>=20", 11),
    ("title: agent", "nothing after 'title:' — write title:word, title:\"a phrase\" or title:(a OR b)", 6),
    ("title:", "nothing after 'title:' — write title:word, title:\"a phrase\" or title:(a OR b)", 6),
    ("title:-survey", "put '-' before the field to exclude: -title:survey", 0),
    ("title:(agent author:lecun)", "'author:' cannot be used inside 'title:(...)'", 13),
    ("title:(agent upvotes:>3)", "'upvotes:' cannot be used inside 'title:(...)'", 13),
    ("OR agent", "OR needs something to look for on both sides", 0),
    ("agent OR", "OR needs something to look for on both sides", 6),
    ("agent OR OR video", "OR needs something to look for on both sides", 6),
    ("agent AND", "AND needs something to look for on both sides", 6),
    ("(AND agent)", "AND needs something to look for on both sides", 1),
    ("agent NOT", "NOT needs something to exclude after it", 6),
    ("agent -", "'-' needs something to exclude right after it, like -survey", 6),
    ("agent - survey", "'-' needs something to exclude right after it, like -survey", 6),
    ("(agent -)", "'-' needs something to exclude right after it, like -survey", 7),
    ("agent -OR x", "'-' needs something to exclude after it", 6),
    ("-survey", "a rule needs at least one word to look for, not only exclusions", 0),
    ("NOT survey -review", "a rule needs at least one word to look for, not only exclusions", 0),
    ("agent OR -survey", "a rule needs at least one word to look for, not only exclusions", 9),
    ("title:(-survey)", "a rule needs at least one word to look for, not only exclusions", 7),
    ("diffus*ion", "'*' goes only at the end of a word", 6),
    ("*", "'*' needs a letter or digit right before it, like diffus*", 0),
    ("gpt-*", "'*' needs a letter or digit right before it, like diffus*", 4),
    ('"large *"', "'*' needs a letter or digit right before it, like diffus*", 7),
    ("agent &&", "'&&' has no letters or digits to look for", 6),
    ("((((((((((((((((((((((x))))))))))))))))))))))", "too many nested parentheses (at most 20)", 20),
]


@pytest.mark.parametrize(("rule", "problem", "position"), ERRORS, ids=[e[0] or "<empty>" for e in ERRORS])
def test_each_bad_rule_gets_its_message_with_the_caret_at_the_problem(
    rule: str, problem: str, position: int
) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule(rule)
    assert (info.value.problem, info.value.position) == (problem, position)


def test_the_message_quotes_the_rule_with_a_caret_under_the_problem() -> None:
    with pytest.raises(RuleError) as info:
        parse_rule("agent titel:survey")
    assert str(info.value) == "unknown field 'titel' — did you mean 'title'?\n  agent titel:survey\n        ^"


def test_a_rule_of_500_characters_is_accepted_and_501_is_refused() -> None:
    ok = ("abcdefghi " * 50)[:499] + "z"
    assert len(ok) == 500
    parse_rule(ok)
    with pytest.raises(RuleError) as info:
        parse_rule(ok + "x")
    assert info.value.problem == "rule is too long: 501 characters, at most 500"
    assert info.value.position == 500


def test_a_rule_of_50_words_is_accepted_and_the_51st_word_is_refused_where_it_starts() -> None:
    parse_rule(" ".join(["ab"] * 50))
    with pytest.raises(RuleError) as info:
        parse_rule(" ".join(["ab"] * 49) + " few-shot")
    assert info.value.problem == "too many words: a rule has at most 50"
    assert info.value.position == 49 * 3


def test_validate_rules_strips_drops_blank_lines_and_keeps_the_order() -> None:
    assert validate_rules(["  diffusion ", "", "   ", "title:agent\n"]) == ["diffusion", "title:agent"]
    assert validate_rules([]) == []


def test_validate_rules_names_which_rule_is_wrong_when_there_are_several() -> None:
    with pytest.raises(RuleError) as info:
        validate_rules(["diffusion", "", "  (agent"])
    assert info.value.problem == "rule 2: unclosed parenthesis"
    assert str(info.value).splitlines() == ["rule 2: unclosed parenthesis", "  (agent", "  ^"]
    with pytest.raises(RuleError) as single:
        validate_rules(["", "(agent"])
    assert single.value.problem == "unclosed parenthesis"


_FRAGMENTS = st.sampled_from(
    [
        "a",
        "bc",
        "OR",
        "AND",
        "NOT",
        "or",
        "-",
        "(",
        ")",
        '"',
        "“",
        "*",
        ":",
        " ",
        " ",
        "title:",
        "author:",
        "upvotes:",
        ">=",
        "<",
        "=",
        "7",
        "x-y",
        "é",
        "ß",
        "İ",
        "́",
        "\n",
        "titel:",
        "_",
        "&",
        "org:(",
        "//",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(_FRAGMENTS, max_size=40).map("".join), st.text(max_size=80)))
def test_the_parser_never_raises_anything_but_rule_error(rule: str) -> None:
    try:
        parse_rule(rule)
    except RuleError as exc:
        assert 0 <= exc.position <= len(rule)
        assert exc.problem and "\n" not in exc.problem


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=490, max_size=700))
def test_long_or_deeply_nested_input_is_refused_cleanly(rule: str) -> None:
    for candidate in (rule, "(" * 300 + "a" + ")" * 199, "-" * 499 + "a", "NOT " * 120 + "a"):
        with contextlib.suppress(RuleError):
            parse_rule(candidate)
