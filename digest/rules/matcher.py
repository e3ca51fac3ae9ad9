"""Inverted matching of many subscribers' rules over one day's papers (DESIGN.md section 11).

The papers are tokenised once per field and indexed ``word -> set of papers`` (a Python int used as a
bitset: bit i is paper i). A rule is then a handful of ``&``, ``|`` and ``~`` on those ints, whatever the
number of papers, and its result is memoised by rule text; a query word is resolved once per distinct
word (its plural forms, or for ``word*`` every indexed word it prefixes, found by bisection in the sorted
vocabulary). Phrases are verified by position only on the few papers that hold all their words.
The cost grows with papers x distinct words, not with subscribers x rules.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import replace

from digest.errors import RuleError
from digest.models import Explanation, MatchedPaper, Paper, Rule
from digest.rules.explain import explain_query
from digest.rules.like_scores import LikeScores, like_text
from digest.rules.nodes import And, Compare, Like, Node, Not, Or, Query, Term, Word
from digest.rules.parser import FIELD_NAMES, MAX_CHARS, MAX_WORDS, parse_cached, parse_rule
from digest.rules.text import DEFAULT_FIELDS, FIELDS, PaperText, cached_paper_text

RuleLike = Rule | Query | str

# Rules made only of ASCII letters, digits and spaces (and no upper-case operator) are plain AND-of-words
# over the default fields; they are by far the most common and skip the parser. Our own fixed pattern.
_PLAIN = re.compile(r"[A-Za-z0-9 ]+")
# Other ASCII rules are parsed once per *shape*: the rule with each searched word replaced by a
# placeholder (``title:(agent OR agents) -survey`` -> ``title:(w0 OR w1) -w2``). Runs of letters and
# digits are exactly the words the parser would see, so the template parses to the same tree.
_RUNS = re.compile(r"([A-Za-z0-9]+)")
_OPERATOR_WORDS = frozenset({"OR", "AND", "NOT"})

# A compiled template: ("t", ((slot, prefix), ...), fields) where slot is the index of the rule's word
# or a word kept as written; ("c", Compare); ("n", child); ("a", children); ("o", children).
Program = tuple[object, ...]


def _compile_template(node: Node) -> Program:
    if isinstance(node, Term):
        slots = tuple(
            (int(w[1:]) if w[0] == "w" and w[1:].isdigit() else w, prefix) for w, prefix in node.words
        )
        return ("t", slots, node.fields)
    if isinstance(node, Compare):
        return ("c", node)
    if isinstance(node, Not):
        return ("n", _compile_template(node.child))
    if isinstance(node, And):
        return ("a", tuple(_compile_template(c) for c in node.children))
    assert isinstance(node, Or)
    return ("o", tuple(_compile_template(c) for c in node.children))


def bit_indices(bits: int) -> list[int]:
    """The positions of the set bits of ``bits``, lowest first."""
    out: list[int] = []
    while bits:
        low = bits & -bits
        out.append(low.bit_length() - 1)
        bits ^= low
    return out


class BatchMatcher:
    """Match any number of subscribers' rules against one fixed list of papers.

    ``match(rules)`` returns the indices (into ``papers``) of the papers any of the rules matches;
    ``select(rules)`` returns them as MatchedPaper with explanations, most upvoted first.
    Results are memoised per distinct rule text (at most ``cache_size`` of them are kept), so a million
    subscribers sharing popular rules cost little more than the distinct rules.
    """

    def __init__(
        self, papers: Sequence[Paper], *, cache_size: int = 262_144, likes: LikeScores | None = None
    ) -> None:
        self.papers: tuple[Paper, ...] = tuple(papers)
        self.likes = likes  # None: like: rules match nothing (semantic extra off)
        self.texts: tuple[PaperText, ...] = tuple(cached_paper_text(p) for p in self.papers)
        self.all_bits = (1 << len(self.papers)) - 1
        self._cache_size = cache_size
        self._index: dict[str, dict[str, int]] = {f: {} for f in FIELDS}
        for i, text in enumerate(self.texts):
            bit = 1 << i
            for field in FIELDS:
                index = self._index[field]
                for seg in text.fields[field]:
                    for token in set(seg.tokens):
                        index[token] = index.get(token, 0) | bit
        self._vocab: dict[str, list[str]] = {}
        self._word_tokens: dict[tuple[str, Word], frozenset[str]] = {}
        self._word_bits: dict[tuple[str, Word], int] = {}
        self._plain_bits: dict[str, int] = {}
        self._term_bits: dict[tuple[tuple[Word, ...], tuple[str, ...]], int] = {}
        self._compare_bits: dict[tuple[str, int], int] = {}
        self._rule_bits: dict[str, int] = {}
        self._shapes: dict[str, Program | None] = {}
        self._explanations: dict[tuple[str, int], Explanation] = {}
        self._ranked: dict[tuple[str, ...], tuple[MatchedPaper, ...]] = {}
        # One explanation-free MatchedPaper per paper, shared by every ranked() result.
        self._bare = tuple(MatchedPaper(p, ()) for p in self.papers)
        self._rank = [(-p.upvotes, p.id) for p in self.papers].__getitem__
        self.stats = {"plain": 0, "shaped": 0, "parsed": 0, "cached": 0}

    # -- words and terms ---------------------------------------------------------------------------

    def _tokens_for(self, field: str, word: Word) -> frozenset[str]:
        """The indexed tokens of ``field`` that ``word`` matches (itself and plurals, or by prefix)."""
        key = (field, word)
        found = self._word_tokens.get(key)
        if found is None:
            text, prefix = word
            index = self._index[field]
            if prefix:
                vocab = self._vocab.get(field)
                if vocab is None:
                    vocab = self._vocab[field] = sorted(index)
                hits = []
                for k in range(bisect_left(vocab, text), len(vocab)):
                    if not vocab[k].startswith(text):
                        break
                    hits.append(vocab[k])
                found = frozenset(hits)
            else:
                found = frozenset(t for t in (text, text + "s", text + "es") if t in index)
            self._word_tokens[key] = found
        return found

    def _bits_for(self, field: str, word: Word) -> int:
        key = (field, word)
        bits = self._word_bits.get(key)
        if bits is None:
            index = self._index[field]
            bits = 0
            for token in self._tokens_for(field, word):
                bits |= index[token]
            self._word_bits[key] = bits
        return bits

    def _phrase_in(self, paper: int, field: str, words: tuple[Word, ...]) -> bool:
        allowed = [self._tokens_for(field, w) for w in words]
        n = len(words)
        for seg in self.texts[paper].fields[field]:
            tokens = seg.tokens
            for start in range(len(tokens) - n + 1):
                if all(tokens[start + k] in allowed[k] for k in range(n)):
                    return True
        return False

    def term_bits(self, term: Term) -> int:
        """The papers containing ``term`` in one of its fields."""
        return self._words_bits(term.words, term.fields)

    def _words_bits(self, words: tuple[Word, ...], fields: tuple[str, ...]) -> int:
        key = (words, fields)
        bits = self._term_bits.get(key)
        if bits is None:
            bits = 0
            for field in fields:
                candidates = self.all_bits
                for word in words:
                    candidates &= self._bits_for(field, word)
                    if not candidates:
                        break
                if len(words) > 1:
                    for i in bit_indices(candidates):
                        if not self._phrase_in(i, field, words):
                            candidates &= ~(1 << i)
                bits |= candidates
            self._term_bits[key] = bits
        return bits

    def _compare(self, node: Compare) -> int:
        key = (node.op, node.value)
        bits = self._compare_bits.get(key)
        if bits is None:
            bits = 0
            for i, text in enumerate(self.texts):
                if node.test(text.upvotes):
                    bits |= 1 << i
            self._compare_bits[key] = bits
        return bits

    def node_bits(self, node: Node) -> int:
        """The papers an AST node matches."""
        if isinstance(node, Term):
            return self.term_bits(node)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Like):
            return self.likes.bits(node.paper_id) & self.all_bits if self.likes is not None else 0
        if isinstance(node, Not):
            return self.all_bits & ~self.node_bits(node.child)
        if isinstance(node, And):
            bits = self.all_bits
            for child in node.children:
                bits &= self.node_bits(child)
                if not bits:
                    break
            return bits
        assert isinstance(node, Or)
        bits = 0
        for child in node.children:
            bits |= self.node_bits(child)
        return bits

    def _plain(self, text: str) -> int | None:
        """Fast path for rules of plain ASCII words (see _PLAIN); None when the rule needs the parser."""
        if len(text) > MAX_CHARS or not _PLAIN.fullmatch(text):
            return None
        parts = text.split()
        if not parts or len(parts) > MAX_WORDS or "OR" in parts or "AND" in parts or "NOT" in parts:
            return None
        cache = self._plain_bits
        bits = self.all_bits
        for part in parts:
            word = part.lower()
            wb = cache.get(word)
            if wb is None:
                wb = 0
                for field in DEFAULT_FIELDS:
                    wb |= self._bits_for(field, (word, False))
                cache[word] = wb
            bits &= wb
            if not bits:
                break
        return bits

    def _shaped(self, text: str) -> int | None:
        """Evaluate an ASCII rule through its shape's template; None when the rule needs the parser."""
        if len(text) > MAX_CHARS or not text.isascii():
            return None
        parts = _RUNS.split(text)
        found: list[str] = []
        for k in range(1, len(parts), 2):
            run = parts[k]
            if run in _OPERATOR_WORDS or run.isdigit():
                continue
            if parts[k + 1].startswith(":"):
                field = run.lower()
                if field not in FIELD_NAMES:
                    return None  # an unknown field: let the parser say so
                parts[k] = field
                continue
            parts[k] = f"w{len(found)}"
            found.append(run.lower())
        shape = "".join(parts)
        if shape in self._shapes:
            program = self._shapes[shape]
        else:
            try:
                program = _compile_template(parse_rule(shape).root)
            except RuleError:
                program = None  # the real rule is parsed, to report the error at the right place
            if len(self._shapes) >= self._cache_size:
                self._shapes.clear()
            self._shapes[shape] = program
        if program is None:
            return None
        return self._run(program, found)

    def _run(self, program: Program, found: list[str]) -> int:
        kind = program[0]
        if kind == "t":
            slots: tuple[tuple[int | str, bool], ...] = program[1]  # type: ignore[assignment]
            words = tuple((found[s] if isinstance(s, int) else s, p) for s, p in slots)
            return self._words_bits(words, program[2])  # type: ignore[arg-type]
        if kind == "c":
            return self._compare(program[1])  # type: ignore[arg-type]
        if kind == "n":
            return self.all_bits & ~self._run(program[1], found)  # type: ignore[arg-type]
        children: tuple[Program, ...] = program[1]  # type: ignore[assignment]
        if kind == "a":
            bits = self.all_bits
            for child in children:
                bits &= self._run(child, found)
                if not bits:
                    break
            return bits
        bits = 0
        for child in children:
            bits |= self._run(child, found)
        return bits

    # -- rules ---------------------------------------------------------------------------------------

    def rule_bits(self, rule: RuleLike) -> int:
        """The papers one rule matches, as a bitset. Raises RuleError for an invalid rule text."""
        text = _text_of(rule)
        bits = self._rule_bits.get(text)
        if bits is not None:
            self.stats["cached"] += 1
        else:
            bits = self._plain(text)
            if bits is not None:
                self.stats["plain"] += 1
            elif isinstance(rule, Query):
                bits = self.node_bits(rule.root)
                self.stats["parsed"] += 1
            else:
                bits = self._shaped(text)
                if bits is not None:
                    self.stats["shaped"] += 1
                else:
                    bits = self.node_bits(parse_cached(text).root)
                    self.stats["parsed"] += 1
            if len(self._rule_bits) >= self._cache_size:
                # Crude but bounded: popular rules come straight back after a reset.
                self._rule_bits.clear()
            self._rule_bits[text] = bits
        return bits

    def match_bits(self, rules: Iterable[RuleLike]) -> int:
        """The papers any of ``rules`` matches, as a bitset (bit i is ``papers[i]``)."""
        bits = 0
        for rule in rules:
            bits |= self.rule_bits(rule)
        return bits

    def match(self, rules: Iterable[RuleLike]) -> list[int]:
        """Indices into ``papers`` of the papers any of ``rules`` matches, ascending."""
        return bit_indices(self.match_bits(rules))

    def ranked(self, rules: Sequence[RuleLike]) -> tuple[MatchedPaper, ...]:
        """The papers any of ``rules`` matches, most upvoted first (ties by id), without explanations;
        memoised per rule set (subscribers share rules: most of a million are one lookup)."""
        key = tuple(map(_text_of, rules))
        found = self._ranked.get(key)
        if found is None:
            bare = self._bare
            found = tuple(bare[i] for i in sorted(self.match(rules), key=self._rank))
            if len(self._ranked) >= self._cache_size // 4:  # each entry holds up to len(papers) refs
                self._ranked.clear()
            self._ranked[key] = found
        return found

    def select(self, rules: Sequence[Rule]) -> list[MatchedPaper]:
        """The papers any rule matches, most upvoted first (ties by id), each with one
        Explanation per matching rule, in the order of ``rules``."""
        per_rule = [self.rule_bits(rule) for rule in rules]
        union = 0
        for bits in per_rule:
            union |= bits
        chosen = sorted(bit_indices(union), key=self._rank)
        out: list[MatchedPaper] = []
        for i in chosen:
            why = [self.explain(rule, i) for rule, bits in zip(rules, per_rule, strict=True) if bits >> i & 1]
            out.append(MatchedPaper(self.papers[i], tuple(why)))
        return out

    def explain(self, rule: Rule, index: int) -> Explanation:
        """Why ``rule`` matches ``papers[index]`` (memoised per rule text and paper).

        Only call it for a paper the rule matches; the terms and spans are those of explain().
        """
        key = (rule.query, index)
        found = self._explanations.get(key)
        if found is None:
            bit = 1 << index

            def holds(node: Node) -> bool:
                return bool(self.node_bits(node) & bit)

            likes = self.likes

            def describe(node: Like) -> str:
                return like_text(likes, node, index) if likes is not None else node.paper_id

            query = parse_cached(rule.query)
            found = explain_query(query, self.texts[index], rule.query, holds, describe) or Explanation(
                rule.query, (), ()
            )
            if len(self._explanations) >= self._cache_size:
                self._explanations.clear()
            self._explanations[key] = found
        return found if found.rule == rule.label else replace(found, rule=rule.label)


def _text_of(rule: RuleLike) -> str:
    if isinstance(rule, Query):
        return rule.text
    return rule.query if isinstance(rule, Rule) else rule


def select_papers(papers: Sequence[Paper], rules: Sequence[Rule]) -> list[MatchedPaper]:
    """One subscriber's digest: the papers any rule matches, with why, most upvoted first (ties: id).

    Raises RuleError if a rule is invalid (rules are validated when saved, so that means a bug or a
    hand-edited database).
    """
    return BatchMatcher(papers).select(rules)
