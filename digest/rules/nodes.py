"""The parsed form of a keyword rule: a small immutable AST (see parser.py for the grammar)."""

from __future__ import annotations

from dataclasses import dataclass

# One word of a term: its normalised text and whether it was written ``word*`` (prefix match).
Word = tuple[str, bool]


@dataclass(frozen=True, slots=True)
class Term:
    """Words to find in a row (one word, a hyphenated word, or a quoted phrase) in any of ``fields``."""

    words: tuple[Word, ...]
    fields: tuple[str, ...]
    text: str  # as the user wrote it (without quotes): shown in explanations
    position: int


@dataclass(frozen=True, slots=True)
class Compare:
    """``upvotes:>=20``: a filter on the paper's upvotes. ``op`` is one of >=, >, <=, <, =."""

    op: str
    value: int
    position: int

    def test(self, upvotes: int) -> bool:
        """Whether a paper with ``upvotes`` passes this filter."""
        if self.op == ">=":
            return upvotes >= self.value
        if self.op == ">":
            return upvotes > self.value
        if self.op == "<=":
            return upvotes <= self.value
        if self.op == "<":
            return upvotes < self.value
        return upvotes == self.value


@dataclass(frozen=True, slots=True)
class Like:
    """``like:2510.12345``: papers whose embedding is close to that paper's (semantic extra)."""

    paper_id: str
    position: int


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    position: int


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    position: int


Node = Term | Compare | Like | Not | And | Or


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed rule: its text, its AST and its terms (in the order written)."""

    text: str
    root: Node
    terms: tuple[Term, ...]
    likes: tuple[Like, ...] = ()


def iter_terms(node: Node) -> list[Term]:
    """Every Term under ``node``, left to right."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Compare | Like):
        return []
    if isinstance(node, Not):
        return iter_terms(node.child)
    out: list[Term] = []
    for child in node.children:
        out.extend(iter_terms(child))
    return out


def iter_likes(node: Node) -> list[Like]:
    """Every Like under ``node``, left to right (excluded ones too: ``-like:x`` needs x's scores)."""
    if isinstance(node, Like):
        return [node]
    if isinstance(node, Term | Compare):
        return []
    if isinstance(node, Not):
        return iter_likes(node.child)
    out: list[Like] = []
    for child in node.children:
        out.extend(iter_likes(child))
    return out
