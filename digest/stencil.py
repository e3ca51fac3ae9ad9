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

A stencil also keeps its pieces as the bytes a MIME part encodes (``wire_bytes``: UTF-8, CRLF line ends), and
their base64 as it goes: base64 works in groups of 3 bytes, so a piece's encoding depends only on how many of
its first bytes complete the group the text before it left open (0, 1 or 2). Each piece is encoded once per
such offset and kept; a mail encodes only its own values and the groups around them (``_Pieces.base64``).
Base64 of the whole part was the largest cost of a shared digest (binascii, about 1 ns a byte).
"""

from __future__ import annotations

import re
from binascii import b2a_base64
from collections.abc import Mapping
from dataclasses import dataclass, field

from markupsafe import escape

from digest.models import RenderedEmail

#: The personal values of a digest, by mark name. ``more`` is the "More like this" link without the paper id
#: (the paper blocks carry ``MORE_MARK/<id>``, see digest.paperblocks).
NAMES = ("recipient", "greeting", "manage", "unsubscribe", "view", "more")
MARKS = {name: f"\x01{name}\x01" for name in NAMES}
_MARK = re.compile("\x01(" + "|".join(NAMES) + ")\x01")


def wire_bytes(text: str) -> bytes:
    """``text`` as a MIME part's bytes before base64: UTF-8 with CRLF line ends, without NUL."""
    # A lone surrogate (JSON can carry one) cannot be UTF-8: it becomes "?" rather than stop the mail.
    data = text.encode("utf-8", "replace")
    # Byte-level scans are memchr-fast; the rare body with CR or NUL takes the slower normalising path.
    if b"\r" in data or b"\0" in data:
        data = data.replace(b"\0", b"").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Personal:
    """One subscriber's values, each as text and as escaped HTML, and both as bytes (once per mail)."""

    text: Mapping[str, str]
    html: Mapping[str, str]
    wire_text: Mapping[str, bytes]
    wire_html: Mapping[str, bytes]

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Personal:
        html = {name: str(escape(value)) for name, value in values.items()}
        return cls(
            values,
            html,
            {name: wire_bytes(value) for name, value in values.items()},
            {name: wire_bytes(value) for name, value in html.items()},
        )

    def html_bytes(self, name: str) -> int:
        return len(self.wire_html[name])


def base64_of(data: bytes) -> bytes:
    """Base64 without line breaks (MIME's 76-column lines are cut when the message is assembled)."""
    return b2a_base64(data, newline=False)


@dataclass(frozen=True, slots=True)
class WireDigest:
    """A digest ready for MIME: the subject, the ids it shows, and both parts as ``base64_of(wire_bytes(...))``."""

    subject: str
    shown: tuple[str, ...]
    text64: bytes
    html64: bytes


@dataclass(frozen=True, slots=True)
class _Pieces:
    """A rendering cut at its marks: the literal pieces (as text and as bytes), and (position, name) of each
    mark."""

    pieces: tuple[str, ...]
    wire: tuple[bytes, ...]
    slots: tuple[tuple[int, str], ...]
    #: (piece, bytes it gives to the open group) -> (base64 of its whole groups after those, bytes left over)
    _encoded: dict[tuple[int, int], tuple[bytes, bytes]] = field(default_factory=dict, compare=False)

    @classmethod
    def cut(cls, rendered: str) -> _Pieces:
        parts = _MARK.split(rendered)  # literal, name, literal, name, ..., literal
        wire = tuple(wire_bytes(p) if i % 2 == 0 else b"" for i, p in enumerate(parts))
        return cls(tuple(parts), wire, tuple((i, parts[i]) for i in range(1, len(parts), 2)))

    def fill(self, values: Mapping[str, str]) -> str:
        out = list(self.pieces)
        for i, name in self.slots:
            out[i] = values[name]
        return "".join(out)

    def fill_wire(self, values: Mapping[str, bytes]) -> bytes:
        out = list(self.wire)
        for i, name in self.slots:
            out[i] = values[name]
        return b"".join(out)

    def base64(self, values: Mapping[str, bytes]) -> bytes:
        """``base64_of(self.fill_wire(values))``, encoding only the values and the groups they touch."""
        out: list[bytes] = []
        left = b""  # bytes of an unfinished 3-byte group
        wire, slots = self.wire, iter(self.slots)
        for i in range(0, len(wire), 2):
            piece = wire[i]
            need = -len(left) % 3
            if len(piece) < need:
                left += piece
            else:
                if need:
                    out.append(b2a_base64(left + piece[:need], newline=False))
                whole, left = self._groups(i, need)
                out.append(whole)
            if i + 1 < len(wire):
                data = left + values[next(slots)[1]]
                cut = len(data) - len(data) % 3
                out.append(b2a_base64(data[:cut], newline=False))
                left = data[cut:]
        out.append(b2a_base64(left, newline=False))
        return b"".join(out)

    def _groups(self, i: int, skip: int) -> tuple[bytes, bytes]:
        found = self._encoded.get((i, skip))
        if found is None:
            rest = self.wire[i][skip:]
            cut = len(rest) - len(rest) % 3
            found = self._encoded[i, skip] = (b2a_base64(rest[:cut], newline=False), rest[cut:])
        return found


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
        fixed = sum(len(p.encode("utf-8", "replace")) for i, p in enumerate(html.pieces) if i % 2 == 0)
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

    def wire(self, personal: Personal) -> WireDigest:
        """This subscriber's digest for MIME: the base64 of the ``wire_bytes`` of what ``fill`` gives."""
        return WireDigest(
            subject=self.subject,
            shown=self.shown,
            text64=self.text.base64(personal.wire_text),
            html64=self.html.base64(personal.wire_html),
        )
