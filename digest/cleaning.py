"""Outside text, made harmless at the two edges (pure: no I/O).

``clean_text`` runs once where text enters: every text field of a scraped paper (the source schema) and every
field of a web form. It drops what no paper title, abstract, name, address or rule ever needs and what does
harm downstream:

- NUL and the other C0 controls except tab and newline (PostgreSQL refuses NUL in text; CR, ESC, BEL and
  friends only ever serve to fake lines or drive terminals), DEL, and the C1 controls U+0080-U+009F (U+009B
  is a one-byte CSI for some terminals);
- the bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069 (they reverse what a reader
  sees: "Trojan Source"), and also the implicit marks U+200E, U+200F and U+061C. The marks are dropped too
  because every surface we render (mail, pages, terminal) is left-to-right and the Unicode bidi algorithm
  orders ordinary right-to-left text without them; keeping them would leave invisible characters that make
  two equal-looking rules or addresses differ.

``visible`` runs where outside text leaves for a terminal (the CLI): instead of dropping, it shows each such
character as an escape (``\\x1b``, ``\\u202e``), so the operator sees that something odd was there and
nothing in it can write the clipboard (OSC 52), plant links (OSC 8) or clear the screen.
"""

from __future__ import annotations

import json
from typing import Any

_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_CONTROLS = [*(c for c in range(0x20) if c not in (0x09, 0x0A)), 0x7F, *range(0x80, 0xA0)]

#: str.translate table: every character dropped at the edge maps to None (one C-level pass).
_DROP: dict[int, None] = dict.fromkeys([*_CONTROLS, *_BIDI])
#: What ``visible`` escapes: the dropped set plus tab and newline (one printed value stays on one line),
#: and the Unicode line and paragraph separators.
_SHOW: dict[int, str] = {
    c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in [*range(0x20), *_DROP, 0x2028, 0x2029]
}


def clean_text(text: str) -> str:
    """``text`` without NUL, the C0/C1 controls other than tab and newline, DEL, and the bidi controls."""
    return text.translate(_DROP)


def clean_value(value: Any) -> Any:
    """``clean_text`` for a string or each string of a list; anything else unchanged (for validators)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_text(v) if isinstance(v, str) else v for v in value]
    return value


def visible(text: object) -> str:
    """``text`` for a terminal: every control and bidi character shown as an escape, never acted upon."""
    return str(text).translate(_SHOW)


def visible_lines(text: object) -> list[str]:
    """The lines of a multi-line message, each made ``visible`` (for errors that quote outside text)."""
    return [visible(line) for line in str(text).split("\n")]


def visible_json(data: Any, *, indent: int | None = None) -> str:
    """JSON for a terminal: valid JSON whose strings carry C1 and bidi characters as \\u escapes.

    ``json.dumps`` already escapes C0 controls; with ``ensure_ascii=False`` (names stay readable) it would
    print C1 and bidi characters raw.
    """
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return text.translate({c: f"\\u{c:04x}" for c in [0x7F, *range(0x80, 0xA0), *_BIDI, 0x2028, 0x2029]})
