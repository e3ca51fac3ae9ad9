"""A digest rendered once per distinct content, then filled in per subscriber (pure: no I/O).

Most of a digest is the same for everyone whose rules picked the same papers: only the address, the greeting
and the personal links (manage, unsubscribe, web view, "More like this") differ. ``digest.render`` renders a
*stencil* with a mark where each of those goes, and each mail is the stencil's pieces joined with that
subscriber's values: one ``str.join`` instead of a Jinja render per mail (measured on the realistic run,
scripts/bench: rendering was about half of our CPU per message).

A mark is a control character around a name. Nothing else in a rendering can contain one: every text that
reaches a template passes ``one_line`` or the paper blocks' cleaning, which turn control characters into
spaces, and URLs pass ``safe_url``, which refuses them. A value goes in escaped for HTML (as the autoescaping
template would have put it) and as it is for text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from markupsafe import escape

from digest.models import RenderedEmail

#: The personal values of a digest, by mark name. ``more`` is the "More like this" link without the paper id
#: (the paper blocks carry ``MORE_MARK/<id>``, see digest.paperblocks).
NAMES = ("recipient", "greeting", "manage", "unsubscribe", "view", "more")
MARKS = {name: f"\x01{name}\x01" for name in NAMES}
_MARK = re.compile("\x01(" + "|".join(NAMES) + ")\x01")


@dataclass(frozen=True, slots=True)
class Personal:
    """One subscriber's values, each as text and as escaped HTML (computed once per mail)."""

    text: Mapping[str, str]
    html: Mapping[str, str]

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Personal:
        return cls(values, {name: str(escape(value)) for name, value in values.items()})

    def html_bytes(self, name: str) -> int:
        return len(self.html[name].encode("utf-8"))


@dataclass(frozen=True, slots=True)
class _Pieces:
    """A rendering cut at its marks: the literal pieces, and (position, name) of each mark."""

    pieces: tuple[str, ...]
    slots: tuple[tuple[int, str], ...]

    @classmethod
    def cut(cls, rendered: str) -> _Pieces:
        parts = _MARK.split(rendered)  # literal, name, literal, name, ..., literal
        return cls(tuple(parts), tuple((i, parts[i]) for i in range(1, len(parts), 2)))

    def fill(self, values: Mapping[str, str]) -> str:
        out = list(self.pieces)
        for i, name in self.slots:
            out[i] = values[name]
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Stencil:
    """A rendered digest with marks for the personal values; ``fill`` makes one subscriber's mail."""

    subject: str
    preheader: str
    shown: tuple[str, ...]
    html: _Pieces
    text: _Pieces
    #: UTF-8 bytes of the HTML without its marks, and how often each mark occurs in it: a filled mail's size
    #: is known before it is filled (the size budget needs it for every mail).
    fixed_html_bytes: int
    html_marks: tuple[tuple[str, int], ...]

    @classmethod
    def cut(cls, rendered: RenderedEmail) -> Stencil:
        html, text = _Pieces.cut(rendered.html), _Pieces.cut(rendered.text)
        counts: dict[str, int] = {}
        for _, name in html.slots:
            counts[name] = counts.get(name, 0) + 1
        fixed = sum(len(p.encode("utf-8")) for i, p in enumerate(html.pieces) if i % 2 == 0)
        return cls(
            subject=rendered.subject,
            preheader=rendered.preheader,
            shown=rendered.shown,
            html=html,
            text=text,
            fixed_html_bytes=fixed,
            html_marks=tuple(sorted(counts.items())),
        )

    def html_size(self, personal: Personal) -> int:
        """The UTF-8 size of the HTML part once filled with ``personal``."""
        return self.fixed_html_bytes + sum(n * personal.html_bytes(name) for name, n in self.html_marks)

    def fill(self, personal: Personal) -> RenderedEmail:
        """This subscriber's digest: the same bytes a render with their values would have made."""
        return RenderedEmail(
            subject=self.subject,
            text=self.text.fill(personal.text),
            html=self.html.fill(personal.html),
            preheader=self.preheader,
            shown=self.shown,
        )
