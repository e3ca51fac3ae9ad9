"""The keyword rule language of DESIGN.md section 5: rule text -> Query (an AST), or a RuleError.

Grammar (operators are upper case; a lower-case ``or`` is an ordinary word)::

    rule    := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          adjacent items are ANDed
    unary   := ("NOT" | "-") unary | primary    "-" must touch what it excludes
    primary := "(" or ")" | FIELD ":" value | "upvotes:" [>=|>|<=|<|=] DIGITS | "like:" ARXIV_ID
             | word | "phrase"
    value   := "(" or ")" | word | "phrase"

Precedence is NOT, then AND, then OR. ``upvotes:20`` means at least 20 (the same as ``upvotes:>=20``).
A rule must look for something: a rule made only of exclusions (``-survey``) is refused, because it
would mail almost every paper of the day; ``upvotes:>=50`` on its own is allowed (the trending papers).

The parser raises nothing but RuleError; user text is never turned into a regular expression.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from digest.errors import RuleError
from digest.rules import like_support as _like_support
from digest.rules import text as _text
from digest.rules.nodes import And, Compare, Like, Node, Not, Or, Query, Term, Word, iter_likes, iter_terms

MAX_CHARS = 500
MAX_WORDS = 50
MAX_DEPTH = 20  # nested parentheses; keeps every recursive walk far from Python's recursion limit

FIELD_NAMES: tuple[str, ...] = (*_text.FIELDS, "upvotes")
#: Every prefix the user may write before a colon (``like:`` is no text field: it names a paper).
_ALL_FIELDS: tuple[str, ...] = (*FIELD_NAMES, "like")
# A new-style arXiv id (what Hugging Face lists), with an optional version that is dropped. A fixed
# pattern of ours: user text is only matched against it.
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})(?:v\d+)?")
_ALIASES = {
    "summary": "abstract",
    "organization": "org",
    "organisation": "org",
    "orgs": "org",
    "authors": "author",
    "keywords": "keyword",
    "tag": "keyword",
    "tags": "keyword",
    "upvote": "upvotes",
    "votes": "upvotes",
    "likes": "upvotes",
    "similar": "like",
    "liked": "like",
}
_QUOTES = '"“”'
_WORD_STOP = frozenset(" \t\r\n\f\v()" + _QUOTES)
_OPERATORS = frozenset({"OR", "AND", "NOT"})
_COMPARATORS = (">=", "<=", ">", "<", "=")
_PIECE = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # ( ) OR AND NOT - FIELD WORD PHRASE CMP LIKE
    pos: int
    value: str = ""
    number: int = 0


def _lex(rule: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(rule)
    while i < n:
        c = rule[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok(c, i))
            i += 1
        elif c in _QUOTES:
            j = i + 1
            while j < n and rule[j] not in _QUOTES:
                j += 1
            if j >= n:
                raise RuleError(rule, i, "unclosed quote")
            toks.append(_Tok("PHRASE", i, rule[i + 1 : j]))
            i = j + 1
        elif c == "-":
            if i + 1 >= n or rule[i + 1].isspace() or rule[i + 1] == ")":
                raise RuleError(rule, i, "'-' needs something to exclude right after it, like -survey")
            toks.append(_Tok("-", i))
            i += 1
        else:
            j = i
            while j < n and rule[j] not in _WORD_STOP and not rule[j].isspace():
                j += 1
            raw = rule[i:j]
            if raw in _OPERATORS:
                toks.append(_Tok(raw, i))
            else:
                colon = raw.find(":")
                if colon > 0 and raw[:colon].isalpha() and not raw.startswith("//", colon + 1):
                    toks.extend(_lex_field(rule, i, j, raw[:colon], raw[colon + 1 :]))
                else:
                    toks.append(_Tok("WORD", i, raw))
            i = j
    return toks


def _lex_field(rule: str, start: int, end: int, name: str, rest: str) -> list[_Tok]:
    field = name.lower()
    value_pos = start + len(name) + 1
    if field not in _ALL_FIELDS:
        guess = _ALIASES.get(field) or next(iter(difflib.get_close_matches(field, _ALL_FIELDS, 1, 0.6)), None)
        hint = f"did you mean '{guess}'?" if guess else f"fields are {', '.join(_ALL_FIELDS)}"
        raise RuleError(rule, start, f"unknown field '{name}' — {hint}")
    if field == "like":
        found = _ARXIV_ID.fullmatch(rest)
        if found is None:
            raise RuleError(rule, value_pos, "like: needs an arXiv id, like like:2510.12345")
        return [_Tok("LIKE", start, found.group(1))]
    if field == "upvotes":
        op = next((o for o in _COMPARATORS if rest.startswith(o)), "")
        digits = rest[len(op) :]
        if not (digits.isascii() and digits.isdecimal()):
            raise RuleError(rule, value_pos + len(op), "upvotes needs a number, like upvotes:>=20")
        return [_Tok("CMP", start, op or ">=", int(digits))]
    if rest:
        if rest[0] == "-":
            raise RuleError(rule, start, f"put '-' before the field to exclude: -{name}:{rest[1:]}")
        return [_Tok("FIELD", start, field), _Tok("WORD", value_pos, rest)]
    if end >= len(rule) or rule[end] not in "(" + _QUOTES:
        raise RuleError(
            rule,
            value_pos,
            f"nothing after '{name}:' — write {name}:word, {name}:\"a phrase\" or {name}:(a OR b)",
        )
    return [_Tok("FIELD", start, field)]


def _is_word_char(ch: str) -> bool:
    return bool(_text.words(ch))


def _words_of(rule: str, raw: str, pos: int) -> list[Word]:
    """The words of one whitespace-free piece, honouring a trailing ``*`` (prefix) on the last word."""
    star = raw.find("*")
    prefix = star != -1
    if prefix:
        if star != len(raw) - 1:
            raise RuleError(rule, pos + star, "'*' goes only at the end of a word")
        if star == 0 or not _is_word_char(raw[star - 1]):
            raise RuleError(rule, pos + star, "'*' needs a letter or digit right before it, like diffus*")
        raw = raw[:-1]
    found = _text.words(raw)
    out: list[Word] = [(w, False) for w in found]
    if prefix and out:
        out[-1] = (out[-1][0], True)
    return out


class _Parser:
    def __init__(self, rule: str, toks: list[_Tok]) -> None:
        self.rule = rule
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.field: tuple[str, str] | None = None  # (name, written) while inside field:(...)
        self.word_count = 0

    def error(self, pos: int, problem: str) -> RuleError:
        return RuleError(self.rule, pos, problem)

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self) -> Node:
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:  # only a ')' can stop parse_or early
            raise self.error(tok.pos, "unmatched ')' — there is no '(' before it")
        return node

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.i += 1
            self.expect_operand(tok)
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Or(tuple(children), children[0].position)

    def parse_and(self) -> Node:
        children = [self.parse_unary()]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", ")"):
            if tok.kind == "AND":
                self.i += 1
                self.expect_operand(tok)
            children.append(self.parse_unary())
        return children[0] if len(children) == 1 else And(tuple(children), children[0].position)

    def expect_operand(self, op: _Tok) -> None:
        nxt = self.peek()
        if nxt is None or nxt.kind in ("OR", "AND", ")"):
            raise self.error(op.pos, f"{op.kind} needs something to look for on both sides")

    def parse_unary(self) -> Node:
        negations: list[_Tok] = []
        while (tok := self.peek()) is not None and tok.kind in ("NOT", "-"):
            self.i += 1
            negations.append(tok)
        if negations:
            nxt = self.peek()
            if nxt is None or nxt.kind in ("OR", "AND", ")"):
                last = negations[-1]
                what = "NOT" if last.kind == "NOT" else "'-'"
                raise self.error(last.pos, f"{what} needs something to exclude after it")
        node = self.parse_primary()
        # NOT NOT x is x: collapsing keeps the tree shallow whatever the input.
        return Not(node, negations[0].pos) if len(negations) % 2 else node

    def parse_primary(self) -> Node:
        tok = self.peek()
        if tok is None:  # callers check for an operand first; kept for safety
            raise self.error(len(self.rule), "the rule ends too early")
        if tok.kind in ("OR", "AND"):
            raise self.error(tok.pos, f"{tok.kind} needs something to look for on both sides")
        if tok.kind == ")":
            raise self.error(tok.pos, "unmatched ')' — there is no '(' before it")
        self.i += 1
        if tok.kind == "(":
            return self.parse_group(tok)
        if tok.kind == "CMP":
            if self.field is not None:
                raise self.error(tok.pos, f"'upvotes:' cannot be used inside '{self.field[1]}:(...)'")
            return Compare(tok.value, tok.number, tok.pos)
        if tok.kind == "FIELD":
            return self.parse_field(tok)
        if tok.kind == "LIKE":
            if self.field is not None:
                raise self.error(tok.pos, f"'like:' cannot be used inside '{self.field[1]}:(...)'")
            self.word_count += 1
            if self.word_count > MAX_WORDS:
                raise self.error(tok.pos, f"too many words: a rule has at most {MAX_WORDS}")
            return Like(tok.value, tok.pos)
        if tok.kind == "PHRASE":
            return self.phrase_term(tok)
        return self.word_term(tok)

    def parse_group(self, lparen: _Tok) -> Node:
        nxt = self.peek()
        if nxt is not None and nxt.kind == ")":
            raise self.error(lparen.pos, "empty parentheses")
        if nxt is None:
            raise self.error(lparen.pos, "unclosed parenthesis")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(lparen.pos, f"too many nested parentheses (at most {MAX_DEPTH})")
        node = self.parse_or()
        self.depth -= 1
        close = self.peek()
        if close is None or close.kind != ")":
            raise self.error(lparen.pos, "unclosed parenthesis")
        self.i += 1
        return node

    def parse_field(self, tok: _Tok) -> Node:
        written = self.rule[tok.pos : tok.pos + len(tok.value)]
        if self.field is not None:
            raise self.error(tok.pos, f"'{written}:' cannot be used inside '{self.field[1]}:(...)'")
        value = self.peek()
        assert value is not None  # the lexer guarantees a value right after the colon
        self.field = (tok.value, written)
        try:
            self.i += 1
            if value.kind == "(":
                return self.parse_group(value)
            if value.kind == "PHRASE":
                return self.phrase_term(value)
            return self.word_term(value)
        finally:
            self.field = None

    def fields(self) -> tuple[str, ...]:
        return (self.field[0],) if self.field else _text.DEFAULT_FIELDS

    def make_term(self, words: list[Word], text: str, pos: int) -> Term:
        self.word_count += len(words)
        if self.word_count > MAX_WORDS:
            raise self.error(pos, f"too many words: a rule has at most {MAX_WORDS}")
        return Term(tuple(words), self.fields(), text, pos)

    def word_term(self, tok: _Tok) -> Term:
        words = _words_of(self.rule, tok.value, tok.pos)
        if not words:
            raise self.error(tok.pos, f"'{tok.value}' has no letters or digits to look for")
        return self.make_term(words, tok.value, tok.pos)

    def phrase_term(self, tok: _Tok) -> Term:
        words: list[Word] = []
        pieces: list[str] = []
        for m in _PIECE.finditer(tok.value):
            pieces.append(m.group())
            words.extend(_words_of(self.rule, m.group(), tok.pos + 1 + m.start()))
        if not words:
            raise self.error(tok.pos, "nothing to look for inside the quotes")
        return self.make_term(words, " ".join(pieces), tok.pos)


def _positive(node: Node) -> bool:
    """Whether ``node`` asks for something to be present (not only for things to be absent)."""
    if isinstance(node, Term | Compare | Like):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    return all(_positive(c) for c in node.children)


def _only_exclusions(node: Node) -> int:
    """The position of the part of a non-positive ``node`` that only excludes."""
    if isinstance(node, Or):
        bad = next(c for c in node.children if not _positive(c))
        return _only_exclusions(bad)
    return node.position


def parse_rule(query: str) -> Query:
    """Parse one rule into a Query, or raise RuleError (with a caret under the problem)."""
    stripped = query.strip()
    if not stripped:
        raise RuleError(query, 0, "empty rule — write at least one word to look for")
    if len(stripped) > MAX_CHARS:
        lead = len(query) - len(query.lstrip())
        raise RuleError(
            query, lead + MAX_CHARS, f"rule is too long: {len(stripped)} characters, at most {MAX_CHARS}"
        )
    parser = _Parser(query, _lex(query))
    root = parser.parse()
    if not _positive(root):
        raise RuleError(
            query, _only_exclusions(root), "a rule needs at least one word to look for, not only exclusions"
        )
    return Query(query, root, tuple(iter_terms(root)), tuple(iter_likes(root)))


@lru_cache(maxsize=65536)
def parse_cached(query: str) -> Query:
    """``parse_rule`` memoised by rule text (a Query is immutable, so sharing it is safe)."""
    return parse_rule(query)


def validate_rules(queries: Sequence[str]) -> list[str]:
    """Strip the rules, drop blank ones, and parse each; return the cleaned list or raise RuleError.

    When there are several rules the message starts with ``rule N:`` (N counts the non-blank rules from 1).
    A ``like:`` rule is refused here (when saved) if the semantic extra is not installed.
    """
    cleaned = [q.strip() for q in queries if q.strip()]
    for number, rule in enumerate(cleaned, 1):
        try:
            parsed = parse_rule(rule)
            if parsed.likes and (missing := _like_support.refusal()) is not None:
                raise RuleError(rule, parsed.likes[0].position, missing)
        except RuleError as exc:
            if len(cleaned) == 1:
                raise
            raise RuleError(exc.rule, exc.position, f"rule {number}: {exc.problem}") from None
    return cleaned
