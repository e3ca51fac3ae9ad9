"""The straightforward evaluator: walk a rule's AST on one paper.

It rescans the paper's words for every term and is kept simple enough to trust by reading: the tests use it as the oracle the inverted BatchMatcher must agree with, and the benchmark uses it as the
naive baseline.
"""

from __future__ import annotations

from digest.rules.nodes import And, Compare, Like, Node, Not, Term, Word
from digest.rules.text import PaperText, Segment


def word_matches(token: str, word: Word) -> bool:
    """A paper word matches a query word: the same word, or its plural (+s, +es), or any word it prefixes."""
    text, prefix = word
    if prefix:
        return token.startswith(text)
    return token == text or token == text + "s" or token == text + "es"


def phrase_at(seg: Segment, i: int, words: tuple[Word, ...]) -> bool:
    """Whether ``words`` occur in ``seg`` in a row starting at token ``i``."""
    if i + len(words) > len(seg.tokens):
        return False
    return all(word_matches(seg.tokens[i + k], w) for k, w in enumerate(words))


def term_in_segment(term: Term, seg: Segment) -> bool:
    """Whether the term's words occur in a row somewhere in ``seg``."""
    return any(phrase_at(seg, i, term.words) for i in range(len(seg.tokens)))


def term_matches(term: Term, paper: PaperText) -> bool:
    """Whether the term occurs in any of its fields (never across two segments)."""
    return any(term_in_segment(term, seg) for f in term.fields for seg in paper.fields[f])


def evaluate(node: Node, paper: PaperText) -> bool:
    """Evaluate an AST on one tokenised paper."""
    if isinstance(node, Term):
        return term_matches(node, paper)
    if isinstance(node, Compare):
        return node.test(paper.upvotes)
    if isinstance(node, Like):
        return False  # similarities live in the BatchMatcher (LikeScores), not in the paper's text
    if isinstance(node, Not):
        return not evaluate(node.child, paper)
    if isinstance(node, And):
        return all(evaluate(c, paper) for c in node.children)
    return any(evaluate(c, paper) for c in node.children)
