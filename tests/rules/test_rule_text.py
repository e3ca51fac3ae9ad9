"""Splitting text into words: the same for papers and rules; offsets refer to the original text."""

from __future__ import annotations

import unicodedata

from digest.rules.text import _word_pattern, iter_words, words


def test_every_non_letter_or_digit_splits_words() -> None:
    assert words("Few-shot GPT-4o\nsnake_case, x/y (z)") == [
        "few",
        "shot",
        "gpt",
        "4o",
        "snake",
        "case",
        "x",
        "y",
        "z",
    ]


def test_words_are_case_folded_and_nfkc_normalised() -> None:
    assert words("STRASSE Straße ﬁne ＡＢＣ") == ["strasse", "strasse", "fine", "abc"]
    assert words("cafe\u0301") == words("café") == ["café"]


def test_combining_marks_never_split_a_word() -> None:
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]


def test_offsets_point_at_the_original_characters() -> None:
    text = "Über  Straße-Ⅻ"
    assert [(w, text[s:e]) for w, s, e in iter_words(text)] == [
        ("über", "Über"),
        ("strasse", "Straße"),
        ("xii", "Ⅻ"),
    ]


def test_the_word_pattern_knows_every_combining_mark_in_unicode() -> None:
    pattern = _word_pattern()
    missing = [
        hex(cp)
        for cp in range(0x110000)
        if unicodedata.category(chr(cp))[0] == "M" and not pattern.fullmatch(chr(cp))
    ]
    assert missing == []
