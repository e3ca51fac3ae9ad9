"""One paper's block in a digest (HTML and text), and the text helpers of the digest (pure: no I/O).

Scraped text is untrusted: the HTML template autoescapes, highlights are built by escaping every piece, links
go through ``safe_url`` (http(s) only), and control characters never reach either part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from markupsafe import Markup, escape

from digest.mailtemplates import html_template, inline_marks, text_template
from digest.models import Explanation, MatchedPaper, Paper
from digest.stencil import MARKS
from digest.templating import safe_url

PAPER_HTML_TEMPLATE = "email/partials/paper.html.j2"
PAPER_TEXT_TEMPLATE = "email/partials/paper.txt.j2"
AUTHORS_SHOWN = 3
ABSTRACT_CHARS = 400

# C0/C1 controls (tab and newline too), line/paragraph separators and bidi embeddings/overrides/isolates
# (which can make "gnp.exe" read as "exe.png") become spaces. Same length, so the
# character offsets of Explanation.spans stay valid after cleaning.
_CONTROL_TO_SPACE = {
    c: " "
    for c in [*range(0, 32), *range(127, 160), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}


@dataclass(frozen=True, slots=True)
class _PaperView:
    url: str
    title: str
    title_html: Markup
    authors: str
    organization: str
    upvotes: int
    upvotes_word: str
    comments: str
    summary: str
    summary_html: Markup
    why: str
    links: tuple[tuple[str, str], ...]
    more_like: str = ""


@dataclass(frozen=True, slots=True)
class PaperParts:
    title: str
    html: Markup
    text: str
    #: UTF-8 bytes the block adds to the HTML part (with its line end): the digest's size budget sums these.
    size: int = 0


_PART_CACHE: dict[tuple[MatchedPaper, bool], PaperParts] = {}
# The same blocks without their abstract, for digests past the size budget (rendered only for those).
_BRIEF_CACHE: dict[tuple[MatchedPaper, bool], PaperParts] = {}
#: Stands for the subscriber's "More like this" URL in the shared paper blocks; each mail swaps in its own
#: (``digest.render``). A control character, so no paper text can contain it (they all become spaces).
MORE_MARK = MARKS["more"]
_PART_CACHE_MAX = 4096
# Separates the paper blocks of one batch render. Never in a block: every control character of the data
# becomes a space before rendering, and the templates contain none.
_SEPARATOR = "\x00"


def paper_parts(papers: Sequence[MatchedPaper], more_like: bool = False) -> list[PaperParts]:
    """Each paper's HTML and text blocks, in the order given.

    Cached: in a run, every subscriber whose rules matched the same paper for the same reasons gets the same
    blocks, so each is rendered once per run, not once per mail. The blocks not cached yet are rendered in one
    template call per part (a Jinja render has a fixed cost that would otherwise be paid twice per paper).
    A frozen dataclass recomputes its hash on every lookup, so each paper is looked up once.
    With ``more_like`` each block carries a "More like this" link to ``MORE_MARK/<paper id>``: the caller
    replaces the mark with the subscriber's own link (the block stays shared).
    """
    return _cached_parts(papers, _PART_CACHE, brief=False, more_like=more_like)


def brief_parts(papers: Sequence[MatchedPaper], more_like: bool = False) -> list[PaperParts]:
    """Like ``paper_parts`` without the abstracts: what a digest past its size budget shows for the papers
    ranked last (cached the same way)."""
    return _cached_parts(papers, _BRIEF_CACHE, brief=True, more_like=more_like)


def _cached_parts(
    papers: Sequence[MatchedPaper],
    cache: dict[tuple[MatchedPaper, bool], PaperParts],
    *,
    brief: bool,
    more_like: bool,
) -> list[PaperParts]:
    found = [cache.get((mp, more_like)) for mp in papers]
    missing = [mp for mp, part in zip(papers, found, strict=True) if part is None]
    if missing:
        views = [_paper_view(mp, more_like) for mp in missing]
        if brief:
            views = [replace(v, summary="", summary_html=Markup("")) for v in views]
        html = html_template(PAPER_HTML_TEMPLATE).render(papers=views, separator=_SEPARATOR).split(_SEPARATOR)
        text = text_template(PAPER_TEXT_TEMPLATE).render(papers=views, separator=_SEPARATOR).split(_SEPARATOR)
        if len(cache) + len(missing) > _PART_CACHE_MAX:
            cache.clear()  # a new day's papers: the old blocks will not be asked for again
        fresh = iter(
            _parts(view.title, h.strip("\n"), t.strip("\n"))
            for view, h, t in zip(views, html, text, strict=False)
        )
        for i, part in enumerate(found):
            if part is None:
                found[i] = cache[papers[i], more_like] = next(fresh)
    return [part for part in found if part is not None]


def _parts(title: str, html: str, text: str) -> PaperParts:
    return PaperParts(title=title, html=Markup(html), text=text, size=len(html.encode("utf-8")) + 1)


def clear_caches() -> None:
    """Forget the cached paper blocks (benchmarks use it to measure the uncached cost)."""
    _PART_CACHE.clear()
    _BRIEF_CACHE.clear()


def _paper_view(mp: MatchedPaper, more_like: bool = False) -> _PaperView:
    p = mp.paper
    spans = _spans_by_field(mp.why)
    title = p.title.translate(_CONTROL_TO_SPACE)
    if p.ai_summary:
        summary_raw = p.ai_summary.translate(_CONTROL_TO_SPACE)
        cut = len(summary_raw)
        summary_spans = spans.get("ai_summary", ())
        ellipsis = ""
    else:
        summary_raw = p.summary.translate(_CONTROL_TO_SPACE)
        cut = cut_at_word(summary_raw, ABSTRACT_CHARS)
        summary_spans = spans.get("summary", ())
        ellipsis = "…" if cut < len(summary_raw.rstrip()) else ""
    summary_html = _highlight(summary_raw, summary_spans, cut)
    if ellipsis:
        summary_html = Markup(summary_html + ellipsis)
    authors = ", ".join(one_line(a) for a in p.authors[:AUTHORS_SHOWN])
    authors_line = authors + (" et al." if len(p.authors) > AUTHORS_SHOWN else "")
    return _PaperView(
        url=safe_url(p.url),
        title=" ".join(title.split()),
        title_html=_highlight(title, spans.get("title", ()), len(title)),
        authors=authors_line,
        organization=one_line(p.organization or ""),
        upvotes=p.upvotes,
        upvotes_word="upvote" if p.upvotes == 1 else "upvotes",
        comments=plural(p.num_comments, "comment"),
        summary=" ".join(summary_raw[:cut].split()) + ellipsis,
        summary_html=summary_html,
        why="; ".join(one_line(e.describe()) for e in mp.why),
        links=_links(p),
        more_like=f"{MORE_MARK}/{p.id}" if more_like else "",
    )


def _links(p: Paper) -> tuple[tuple[str, str], ...]:
    candidates = (
        ("arXiv", p.arxiv_url),
        ("PDF", p.pdf_url),
        ("Code", p.github_repo),
        ("Project page", p.project_page),
    )
    return tuple((label, url) for label, raw in candidates if raw and (url := safe_url(raw)))


def _spans_by_field(why: Sequence[Explanation]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for explanation in why:
        for span in explanation.spans:
            out.setdefault(span.field, []).append((span.start, span.end))
    return out


def _highlight(text: str, spans: Sequence[tuple[int, int]], limit: int) -> Markup:
    """``text[:limit]`` escaped, with the spans wrapped in <mark>; every piece is escaped on its own."""
    if not spans:
        return escape(text[:limit])
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        # Spans come from the matcher but are clipped anyway: a bad offset must not break the mail.
        start, end = max(0, start), min(end, limit)
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[str] = []
    pos = 0
    for start, end in merged:
        pieces.append(escape(text[pos:start]))
        pieces.append(_MARK_OPEN)
        pieces.append(escape(text[start:end]))
        pieces.append("</mark>")
        pos = end
    pieces.append(escape(text[pos:limit]))
    return Markup("".join(pieces))


def cut_at_word(text: str, limit: int) -> int:
    """Where to cut ``text`` to at most ``limit`` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return len(text)
    space = text.rfind(" ", 0, limit + 1)
    cut = space if space > limit // 2 else limit
    return len(text[:cut].rstrip())


def one_line(value: str) -> str:
    return " ".join(value.translate(_CONTROL_TO_SPACE).split())


def clip(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: cut_at_word(value, limit - 1)].rstrip(" ,;:-") + "…"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_MARK_OPEN = Markup(inline_marks('<mark css="hl">'))
