"""Splitting text into words, the same way for papers and for rules (DESIGN.md section 5).

A word is a run of letters and digits (``str.isalnum``) plus combining marks, so that a decomposed
"café" or a Devanagari word with vowel signs stays one word. Every other character separates words:
``few-shot`` is ``few shot``, ``GPT-4o`` is ``gpt 4o``, a line break is a space. Each word is compared in
its NFKC + Unicode case-folded form. Offsets always refer to the original text, so highlights land on
the characters the reader sees.

The only regular expression here is our own fixed one; user text is only ever matched *against* it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from digest.models import Paper

# The fields a rule can name (besides ``upvotes``), in the order explanations list them.
FIELDS: tuple[str, ...] = ("title", "abstract", "keyword", "author", "org")
DEFAULT_FIELDS: tuple[str, ...] = ("title", "abstract", "keyword")

# Code points whose combining marks may appear outside 0..0x1FFFF: only the variation selectors supplement.
_MARK_SCAN_RANGES = ((0, 0x20000), (0xE0100, 0xE01F0))


def _mark_class() -> str:
    """A regex character class body listing every combining mark (Unicode category M*)."""
    ranges: list[tuple[int, int]] = []
    for lo, hi in _MARK_SCAN_RANGES:
        for cp in range(lo, hi):
            if unicodedata.category(chr(cp))[0] == "M":
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1] = (ranges[-1][0], cp)
                else:
                    ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}-\\U{b:08x}" if a != b else f"\\U{a:08x}" for a, b in ranges)


@lru_cache(maxsize=1)
def _word_pattern() -> re.Pattern[str]:
    # [^\W_] is "letter or digit" (str.isalnum); marks are added so they never split a word.
    return re.compile(f"(?:[^\\W_]|[{_mark_class()}])+")


def normalize_word(run: str) -> str:
    """The comparable form of one word: NFKC, then Unicode case folding (ASCII takes a fast path)."""
    if run.isascii():
        return run.lower()
    return unicodedata.normalize("NFKC", run).casefold()


def iter_words(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(word, start, end)`` for each word of ``text``; ``text[start:end]`` is the original run."""
    for m in _word_pattern().finditer(text):
        yield normalize_word(m.group()), m.start(), m.end()


def words(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return [normalize_word(m) for m in _word_pattern().findall(text)]


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of paper text a phrase may not cross (a title, one author name, one AI keyword...)."""

    source: (
        str  # the paper attribute the offsets refer to: title, summary, ai_summary, or "" (not highlighted)
    )
    tokens: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]


def segment(text: str, source: str = "") -> Segment:
    """Tokenise one piece of text into a Segment."""
    found = list(iter_words(text))
    return Segment(
        source,
        tuple(w for w, _, _ in found),
        tuple(s for _, s, _ in found),
        tuple(e for _, _, e in found),
    )


@dataclass(frozen=True, slots=True)
class PaperText:
    """A paper's searchable fields, tokenised once. ``fields[name]`` holds that field's segments."""

    fields: dict[str, tuple[Segment, ...]]
    ai_summary: Segment  # not searched; only used to highlight matched terms for the reader
    upvotes: int


def paper_text(paper: Paper) -> PaperText:
    """Tokenise every searchable field of ``paper``.

    ``org`` holds the organisation's display name and its HF handle as two segments.
    """
    orgs = [o for o in (paper.organization, paper.organization_handle) if o]
    return PaperText(
        fields={
            "title": (segment(paper.title, "title"),),
            "abstract": (segment(paper.summary, "summary"),),
            "keyword": tuple(segment(k) for k in paper.ai_keywords),
            "author": tuple(segment(a) for a in paper.authors),
            "org": tuple(segment(o) for o in orgs),
        },
        ai_summary=segment(paper.ai_summary or "", "ai_summary"),
        upvotes=paper.upvotes,
    )


@lru_cache(maxsize=2048)
def cached_paper_text(paper: Paper) -> PaperText:
    """``paper_text`` memoised: one subscriber's rules are checked against the same papers many times."""
    return paper_text(paper)
