"""The digest email: subject, plain text and HTML from a subscriber's matched papers (pure: no I/O).

The HTML is built for mail clients: table layout, inline styles, dark mode and phone rules in <style>
(``digest.mailtemplates`` inlines the CSS once per process); each paper's block comes from
``digest.paperblocks``, cached across the run.

Scraped text is untrusted: the HTML template autoescapes, highlights are built by escaping every piece, links
go through ``safe_url`` (http(s) only), and control characters never reach either part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from markupsafe import Markup

from digest.errors import DigestError
from digest.mailtemplates import head_css, html_template, known_classes, text_template
from digest.models import MatchedPaper, RenderedEmail, Rule
from digest.paperblocks import (
    _CONTROL_TO_SPACE,
    PaperParts,
    brief_parts,
    clip,
    one_line,
    paper_parts,
    plural,
)
from digest.paperblocks import clear_caches as clear_paper_caches
from digest.stencil import MARKS, NAMES, Personal, Stencil, WireDigest
from digest.subject import (
    LABEL_MAX,
    SUBJECT_MAX,
    dates,
    matched_labels,
    render_subject,
)
from digest.templating import safe_url

__all__ = [
    "SUBJECT_MAX",
    "_CONTROL_TO_SPACE",
    "DigestContext",
    "clear_caches",
    "known_classes",
    "render_digest",
    "render_wire",
    "shown_papers",
]

HTML_TEMPLATE = "email/digest.html.j2"
TEXT_TEMPLATE = "email/digest.txt.j2"

PREHEADER_MAX = 140
#: Bytes of decoded HTML a digest may take. Gmail clips above 102 KB (102,400 bytes) and the unsubscribe link
#: goes with the rest; 90,000 leaves room for what relays and clients add.
HTML_BUDGET = 90_000
#: Kept free for the "and N more" line (and group headers) when papers move out for size.
MORE_LINE_BYTES = 1_000


@dataclass(frozen=True, slots=True)
class DigestContext:
    """Everything one subscriber's digest shows.

    ``papers`` is the flat list of matches; each paper is shown once, under the rule of its first explanation
    (``why[0].rule``). Groups follow the order of ``rules`` (by label); papers within a group are ordered by
    upvotes, highest first. When there are more than ``max_papers`` matches, the most upvoted are shown and the
    rest are counted in "and N more on huggingface.co/papers". ``base_url`` is the Hugging Face site (the
    source's base URL), used for that link.
    """

    recipient: str
    run_date: date
    papers: Sequence[MatchedPaper]
    rules: Sequence[Rule]
    manage_url: str
    unsubscribe_url: str
    postal_address: str = ""
    name: str | None = None
    max_papers: int = 30
    title: str = "Paper Digest"
    base_url: str = "https://huggingface.co"
    #: This digest in the browser (``/d/TOKEN``): linked at the top and from "and N more" (papers past
    #: ``max_papers`` or cut to keep the mail under ``HTML_BUDGET``). Empty: no link.
    view_url: str = ""
    view_label: str = "View in your browser"
    #: Bytes of decoded HTML the digest may take (``HTML_BUDGET`` for mail); None: no limit (the web view,
    #: which shows every paper of the mail, including those cut for size).
    html_budget: int | None = HTML_BUDGET
    #: The subscriber's "More like this" link without the paper id (``.../more/TOKEN``); "" shows no link.
    more_like_url: str = ""


@dataclass(frozen=True, slots=True)
class _GroupView:
    label: str
    count: str
    papers: tuple[PaperParts, ...]


@dataclass(frozen=True, slots=True)
class _Layout:
    """What one rendering shows: the papers (each paper once), which of them go without their abstract,
    and how many were moved to the "and N more" line to keep the HTML under the size budget."""

    shown: list[MatchedPaper]
    brief: frozenset[str] = frozenset()
    cut: int = 0


def render_digest(ctx: DigestContext) -> RenderedEmail:
    """Render one subscriber's digest: a one-line subject, the plain-text part, the HTML part, and the ids
    of the papers it shows (record exactly these as delivered: the others were only counted in "and N more").

    The HTML part stays under ``HTML_BUDGET`` bytes whatever ``max_papers`` says (Gmail clips a larger one,
    and the unsubscribe link with it): past the budget, the papers ranked last lose their abstracts, then
    move to the "and N more" line. Each paper block's size is known from its one rendering, so a mail past
    the budget is laid out from those sizes and rendered once more, not measured paper by paper.

    Subscribers whose digests show the same papers share one rendering (``digest.stencil``): it is made
    once, with marks for the address and the personal links, and filled in per mail.

    Raises DigestError when the manage or unsubscribe URL is not an http(s) URL (every digest must carry
    working links to both; the URLs come from ``[web] base_url``).
    """
    stencil, personal = _stencil_for(ctx)
    return stencil.fill(personal)


def render_wire(ctx: DigestContext) -> WireDigest:
    """``render_digest`` for a mail: the same digest with both parts already as the bytes MIME encodes."""
    stencil, personal = _stencil_for(ctx)
    return stencil.wire(personal)


def _stencil_for(ctx: DigestContext) -> tuple[Stencil, Personal]:
    if not safe_url(ctx.unsubscribe_url) or not safe_url(ctx.manage_url):
        raise DigestError(
            "the digest's manage and unsubscribe links must be http(s) URLs: check [web] base_url in the config"
        )
    personal = Personal.of(
        {
            "recipient": one_line(ctx.recipient),
            "greeting": one_line(ctx.name or ""),
            "manage": safe_url(ctx.manage_url),
            "unsubscribe": safe_url(ctx.unsubscribe_url),
            "view": safe_url(ctx.view_url),
            "more": safe_url(ctx.more_like_url),
        }
    )
    key = _content_key(ctx, personal)
    stencil = _cached(key)
    if stencil is None:
        stencil = _remember(key, ctx, _stencil(ctx, _Layout(_select(ctx.papers, ctx.max_papers)), personal))
    size, budget = stencil.html_size(personal), ctx.html_budget
    if budget is None or size <= budget or not stencil.shown:
        return stencil, personal
    # Past the budget the layout depends on the sizes of the personal values too: so does the key.
    fitted_key = (key, tuple(personal.html_bytes(name) for name in NAMES))
    fitted = _cached(fitted_key)
    if fitted is None:
        fitted = _remember(fitted_key, ctx, _fitted(ctx, personal, size, budget))
    return fitted, personal


def _fitted(ctx: DigestContext, personal: Personal, size: int, budget: int) -> Stencil:
    """The stencil whose layout brings this subscriber's mail under ``budget`` (see _fit)."""
    layout = _Layout(_select(ctx.papers, ctx.max_papers))
    more_like = bool(personal.text["more"])
    stencil = None
    while size > budget and layout.shown:
        layout = _fit(layout, size, budget, more_like)
        stencil = _stencil(ctx, layout, personal)
        size = stencil.html_size(personal)
    assert stencil is not None  # the caller saw the first layout past the budget
    return stencil


# Stencils by content; each entry keeps its papers alive, so the ids in its key stay theirs.
_STENCILS: dict[object, tuple[Sequence[MatchedPaper], Stencil]] = {}
_STENCILS_MAX = 64


def _content_key(ctx: DigestContext, personal: Personal) -> tuple[object, ...]:
    """Everything a digest shows except the personal values (of which only their presence counts).

    Papers count by identity (the plan hands every subscriber with the same rules the same objects), which
    spares hashing each paper with its explanations for every mail.
    """
    present = tuple(bool(personal.text[name]) for name in ("greeting", "view", "more"))
    return (
        ctx.run_date,
        tuple(map(id, ctx.papers)),
        tuple(r.label for r in ctx.rules),
        ctx.postal_address,
        ctx.max_papers,
        ctx.title,
        ctx.base_url,
        ctx.view_label,
        ctx.html_budget,
        present,
    )


def _cached(key: object) -> Stencil | None:
    found = _STENCILS.get(key)
    return found[1] if found is not None else None


def _remember(key: object, ctx: DigestContext, stencil: Stencil) -> Stencil:
    if len(_STENCILS) >= _STENCILS_MAX:
        _STENCILS.clear()  # another day or another mix of rules: start over rather than track use
    _STENCILS[key] = (tuple(ctx.papers), stencil)
    return stencil


def clear_caches() -> None:
    """Forget the cached paper blocks and stencils (benchmarks use it to measure the uncached cost)."""
    clear_paper_caches()
    _STENCILS.clear()


def _fit(layout: _Layout, size: int, budget: int, more_like: bool) -> _Layout:
    """The layout that brings a rendering of ``size`` bytes under the budget, from the blocks' own sizes:
    the papers ranked last lose their abstracts first; when that is not enough, they move to "and N more"."""
    ranked = sorted(layout.shown, key=_trending)
    full = {mp.paper.id: part.size for mp, part in zip(ranked, paper_parts(ranked, more_like), strict=True)}
    short = {mp.paper.id: part.size for mp, part in zip(ranked, brief_parts(ranked, more_like), strict=True)}
    now = {i: short[i] if i in layout.brief else full[i] for i in full}
    room = budget - MORE_LINE_BYTES - (size - sum(now.values()))
    total, brief = sum(full.values()), set()
    for mp in reversed(ranked):
        if total <= room:
            break
        brief.add(mp.paper.id)
        total -= full[mp.paper.id] - short[mp.paper.id]
    kept = list(ranked)
    while kept and total > room:
        total -= short[kept.pop().paper.id]
    if len(kept) == len(layout.shown) and brief == layout.brief:
        kept.pop()  # the estimate was short (never seen): drop one more rather than loop
    ids = {mp.paper.id for mp in kept}
    shown = [mp for mp in layout.shown if mp.paper.id in ids]
    return _Layout(shown, frozenset(brief & ids), layout.cut + len(layout.shown) - len(shown))


def _stencil(ctx: DigestContext, layout: _Layout, personal: Personal) -> Stencil:
    """The digest of this layout with marks where the personal values go (``digest.stencil``)."""
    chosen = layout.shown
    more = len(ctx.papers) - len(chosen)
    groups = _group(chosen, ctx.rules, layout.brief, bool(personal.text["more"]))
    view_url = MARKS["view"] if personal.text["view"] else ""
    shown, total = len(chosen), len(ctx.papers)
    count_line = f"{plural(total, 'new paper')} matched your rules"
    count_line += f"; here are the {shown} most upvoted." if more else "."
    more_url, more_label = _more_link(ctx, more, view_url)
    title = one_line(ctx.title) or "Paper Digest"
    # The subject counts what the mail shows ("3 new papers" above 3 papers, however many matched).
    subject = render_subject(title, shown, matched_labels(chosen, ctx.rules), dates(ctx.run_date)[1])
    preheader = _preheader([p for g in groups for p in g.papers])
    values = {
        "subject": subject,
        "title": title,
        "date_long": dates(ctx.run_date)[0],
        "greeting": MARKS["greeting"] if personal.text["greeting"] else "",
        "count_line": count_line,
        "groups": groups,
        "show_groups": len(groups) > 1 or len(ctx.rules) > 1,
        "more": more,
        "more_url": more_url,
        "more_label": more_label,
        # Papers moved out for size and no web view to hold them ("and N more" links there when there is).
        "fit_url": MARKS["manage"] if layout.cut and not view_url else "",
        "fit_label": "narrow your rules",
        "recipient": MARKS["recipient"],
        "rules": [one_line(r.label) for r in ctx.rules] or [g.label for g in groups],
        "manage_url": MARKS["manage"],
        "unsubscribe_url": MARKS["unsubscribe"],
        "postal_lines": [line for line in (one_line(x) for x in ctx.postal_address.splitlines()) if line],
        "preheader": preheader,
        "view_url": view_url,
        "view_label": one_line(ctx.view_label),
    }
    html = html_template(HTML_TEMPLATE).render(values, head_css=head_css(), preheader_pad=_PREHEADER_PAD)
    text = text_template(TEXT_TEMPLATE).render(values)
    rendered = RenderedEmail(
        subject=subject, text=text, html=html, preheader=preheader, shown=tuple(mp.paper.id for mp in chosen)
    )
    return Stencil.cut(rendered)


def _more_link(ctx: DigestContext, more: int, view_url: str) -> tuple[str, str]:
    """Where "and N more" leads: the web view of this digest (it holds them all), else the HF day page."""
    if view_url and more:
        return view_url, "the web version of this digest"
    hf = urlsplit(ctx.base_url)
    return safe_url(f"{ctx.base_url.rstrip('/')}/papers/date/{ctx.run_date.isoformat()}"), (
        f"{one_line(hf.netloc) or 'huggingface.co'}/papers"
    )


# ---------------------------------------------------------------------------------------------- selection


def shown_papers(papers: Sequence[MatchedPaper], max_papers: int) -> list[MatchedPaper]:
    """The papers render_digest shows for these matches: each paper once, the ``max_papers`` most upvoted.

    Record exactly these as delivered (the others were only counted in "and N more").
    """
    return _select(papers, max_papers)


def _select(papers: Sequence[MatchedPaper], max_papers: int) -> list[MatchedPaper]:
    """The papers to show: each paper once (first occurrence), the most upvoted when capped."""
    seen: set[str] = set()
    unique: list[MatchedPaper] = []
    for mp in papers:
        if mp.paper.id not in seen:
            seen.add(mp.paper.id)
            unique.append(mp)
    if max_papers >= 0 and len(unique) > max_papers:
        unique = sorted(unique, key=_trending)[:max_papers]
    return unique


def _trending(mp: MatchedPaper) -> tuple[int, int, str]:
    # Upvotes, then comments, then id: a stable order, so golden files and re-renders agree.
    return (-mp.paper.upvotes, -mp.paper.num_comments, mp.paper.id)


def _group(
    papers: list[MatchedPaper],
    rules: Sequence[Rule],
    brief: frozenset[str] = frozenset(),
    more_like: bool = False,
) -> tuple[_GroupView, ...]:
    by_label: dict[str, list[MatchedPaper]] = {r.label: [] for r in rules}
    for mp in papers:
        label = mp.why[0].rule if mp.why else ""
        by_label.setdefault(label, []).append(mp)
    members = [sorted(group, key=_trending) for group in by_label.values() if group]
    labels = [label for label, group in by_label.items() if group]
    ordered = [mp for group in members for mp in group]
    parts = iter(paper_parts(ordered, more_like))
    if brief:
        short = iter(brief_parts([mp for mp in ordered if mp.paper.id in brief], more_like))
        parts = iter(
            [next(short) if mp.paper.id in brief else part for mp, part in zip(ordered, parts, strict=True)]
        )
    return tuple(
        _GroupView(
            label=clip(one_line(label), LABEL_MAX) or "your rules",
            count=plural(len(group), "paper"),
            papers=tuple(next(parts) for _ in group),
        )
        for label, group in zip(labels, members, strict=True)
    )


def _preheader(papers: list[PaperParts]) -> str:
    if not papers:
        return "No new papers matched your rules this time."
    return clip("Top: " + " · ".join(p.title for p in papers[:3]), PREHEADER_MAX)


# Padding after the preheader so clients do not pull body text into the inbox preview line.
_PREHEADER_PAD = Markup("&#847;&zwnj;&nbsp;" * 60)
