"""The digest email: subject, plain text and HTML from a subscriber's matched papers (pure: no I/O).

The HTML is built for mail clients: table layout, inline styles, dark mode and phone rules in <style>.
CSS is inlined with css-inline once per process, not per message: the template marks elements with
``css="class names"`` and, when the template is loaded, each mark becomes ``class="…" style="…"`` with the
style css-inline computed for those classes from ``templates/email/digest.css``. Rendering a message is then
one Jinja render, with no HTML parsing (css-inline on every message costs more than the whole budget).

Scraped text is untrusted: the HTML template autoescapes, highlights are built by escaping every piece, links
go through ``safe_url`` (http(s) only), and control characters never reach either part.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

import css_inline
from jinja2 import Template
from markupsafe import Markup, escape

from digest.errors import DigestError
from digest.models import Explanation, MatchedPaper, Paper, RenderedEmail, Rule
from digest.templating import environment, safe_url

__all__ = ["DigestContext", "clear_caches", "render_digest", "shown_papers"]

HTML_TEMPLATE = "email/digest.html.j2"
TEXT_TEMPLATE = "email/digest.txt.j2"
SUBJECT_TEMPLATE = "email/subject.txt.j2"
PAPER_HTML_TEMPLATE = "email/partials/paper.html.j2"
PAPER_TEXT_TEMPLATE = "email/partials/paper.txt.j2"

AUTHORS_SHOWN = 3
ABSTRACT_CHARS = 400
SUBJECT_MAX = 120
SUBJECT_LABELS_MAX = 60
SUBJECT_TITLE_MAX = 40
LABEL_MAX = 40
PREHEADER_MAX = 140

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# C0/C1 controls (tab and newline too), line/paragraph separators and bidi embeddings/overrides/isolates
# (which can make "gnp.exe" read as "exe.png") become spaces. Same length, so the
# character offsets of Explanation.spans stay valid after cleaning.
_CONTROL_TO_SPACE = {
    c: " "
    for c in [*range(0, 32), *range(127, 160), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# Certainly accepted by safe_url (scheme, host, no space/control/bracket): skip its slower checks.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?\Z"
)
_CSS_MARK = re.compile(r'\bcss="([A-Za-z0-9_ -]+)"')
_SIMPLE_CLASS_RULE = re.compile(r"\.([A-Za-z0-9_-]+)\s*\{")


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
    #: The subscriber's "More like this" link without the paper id (``.../more/TOKEN``); "" shows no link.
    more_like_url: str = ""


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
class _PaperParts:
    title: str
    html: Markup
    text: str


@dataclass(frozen=True, slots=True)
class _GroupView:
    label: str
    count: str
    papers: tuple[_PaperParts, ...]


def render_digest(ctx: DigestContext) -> RenderedEmail:
    """Render one subscriber's digest: a one-line subject, the plain-text part and the HTML part.

    Raises DigestError when the manage or unsubscribe URL is not an http(s) URL (every digest must carry
    working links to both; the URLs come from ``[web] base_url``).
    """
    manage_url = safe_url(ctx.manage_url)
    unsubscribe_url = safe_url(ctx.unsubscribe_url)
    if not unsubscribe_url or not manage_url:
        raise DigestError(
            "the digest's manage and unsubscribe links must be http(s) URLs: check [web] base_url in the config"
        )

    chosen = _select(ctx.papers, ctx.max_papers)
    more = len(ctx.papers) - len(chosen)
    more_like = safe_url(ctx.more_like_url) if ctx.more_like_url else ""
    groups = _group(chosen, ctx.rules, bool(more_like))
    total = len(ctx.papers)

    rule_labels = [_one_line(r.label) for r in ctx.rules] or [g.label for g in groups]
    date_long = f"{_DAYS[ctx.run_date.weekday()]} {ctx.run_date.day} {_MONTHS[ctx.run_date.month - 1]} {ctx.run_date.year}"
    date_short = (
        f"{_DAYS[ctx.run_date.weekday()][:3]} {ctx.run_date.day} {_MONTHS[ctx.run_date.month - 1][:3]}"
    )
    shown = len(chosen)
    count_line = f"{_plural(total, 'new paper')} matched your rules"
    if more:
        count_line += f"; here are the {shown} most upvoted."
    else:
        count_line += "."

    hf = urlsplit(ctx.base_url)
    more_label = f"{hf.netloc or 'huggingface.co'}/papers"
    more_url = safe_url(f"{ctx.base_url.rstrip('/')}/papers/date/{ctx.run_date.isoformat()}")
    title = _one_line(ctx.title) or "Paper Digest"

    subject = _render_subject(title, total, _matched_labels(ctx.papers, ctx.rules), date_short)
    preheader = _preheader([p for g in groups for p in g.papers])
    values = {
        "subject": subject,
        "title": title,
        "date_long": date_long,
        "greeting": _one_line(ctx.name or ""),
        "count_line": count_line,
        "groups": groups,
        "show_groups": len(groups) > 1 or len(ctx.rules) > 1,
        "more": more,
        "more_url": more_url,
        "more_label": more_label,
        "recipient": _one_line(ctx.recipient),
        "rules": rule_labels,
        "manage_url": manage_url,
        "unsubscribe_url": unsubscribe_url,
        "postal_lines": [line for line in (_one_line(x) for x in ctx.postal_address.splitlines()) if line],
        "preheader": preheader,
    }
    html = _html_template(HTML_TEMPLATE).render(values, head_css=_head_css(), preheader_pad=_PREHEADER_PAD)
    text = _text_template(TEXT_TEMPLATE).render(values)
    if more_like:  # the shared paper blocks carry a mark where this subscriber's link goes
        html = html.replace(_MORE_MARK, str(escape(more_like)))
        text = text.replace(_MORE_MARK, more_like)
    return RenderedEmail(subject=subject, text=text, html=html, preheader=preheader)


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
    papers: list[MatchedPaper], rules: Sequence[Rule], more_like: bool = False
) -> tuple[_GroupView, ...]:
    by_label: dict[str, list[MatchedPaper]] = {r.label: [] for r in rules}
    for mp in papers:
        label = mp.why[0].rule if mp.why else ""
        by_label.setdefault(label, []).append(mp)
    members = [sorted(group, key=_trending) for group in by_label.values() if group]
    labels = [label for label, group in by_label.items() if group]
    parts = iter(_paper_parts([mp for group in members for mp in group], more_like))
    return tuple(
        _GroupView(
            label=_clip(_one_line(label), LABEL_MAX) or "your rules",
            count=_plural(len(group), "paper"),
            papers=tuple(next(parts) for _ in group),
        )
        for label, group in zip(labels, members, strict=True)
    )


_PART_CACHE: dict[tuple[MatchedPaper, bool], _PaperParts] = {}
# Stands for the subscriber's "More like this" URL in the shared paper blocks; replaced per mail. A control
# character, so no paper text can contain it (they all become spaces).
_MORE_MARK = "\x01more\x01"
_PART_CACHE_MAX = 4096
# Separates the paper blocks of one batch render. Never in a block: every control character of the data
# becomes a space before rendering, and the templates contain none.
_SEPARATOR = "\x00"


def _paper_parts(papers: Sequence[MatchedPaper], more_like: bool = False) -> list[_PaperParts]:
    """Each paper's HTML and text blocks, in the order given.

    Cached: in a run, every subscriber whose rules matched the same paper for the same reasons gets the same
    blocks, so each is rendered once per run, not once per mail. The blocks not cached yet are rendered in one
    template call per part (a Jinja render has a fixed cost that would otherwise be paid twice per paper).
    A frozen dataclass recomputes its hash on every lookup, so each paper is looked up once.
    """
    found = [_PART_CACHE.get((mp, more_like)) for mp in papers]
    missing = [mp for mp, part in zip(papers, found, strict=True) if part is None]
    if missing:
        views = [_paper_view(mp, more_like) for mp in missing]
        html = (
            _html_template(PAPER_HTML_TEMPLATE).render(papers=views, separator=_SEPARATOR).split(_SEPARATOR)
        )
        text = (
            _text_template(PAPER_TEXT_TEMPLATE).render(papers=views, separator=_SEPARATOR).split(_SEPARATOR)
        )
        if len(_PART_CACHE) + len(missing) > _PART_CACHE_MAX:
            _PART_CACHE.clear()  # a new day's papers: the old blocks will not be asked for again
        fresh = iter(
            _PaperParts(title=view.title, html=Markup(h.strip("\n")), text=t.strip("\n"))
            for view, h, t in zip(views, html, text, strict=False)
        )
        for i, part in enumerate(found):
            if part is None:
                found[i] = _PART_CACHE[papers[i], more_like] = next(fresh)
    return [part for part in found if part is not None]


def clear_caches() -> None:
    """Forget the cached paper blocks (benchmarks use it to measure the uncached cost)."""
    _PART_CACHE.clear()


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
        cut = _cut_at_word(summary_raw, ABSTRACT_CHARS)
        summary_spans = spans.get("summary", ())
        ellipsis = "…" if cut < len(summary_raw.rstrip()) else ""
    summary_html = _highlight(summary_raw, summary_spans, cut)
    if ellipsis:
        summary_html = Markup(summary_html + ellipsis)
    authors = ", ".join(_one_line(a) for a in p.authors[:AUTHORS_SHOWN])
    authors_line = authors + (" et al." if len(p.authors) > AUTHORS_SHOWN else "")
    return _PaperView(
        url=_link(p.url),
        title=" ".join(title.split()),
        title_html=_highlight(title, spans.get("title", ()), len(title)),
        authors=authors_line,
        organization=_one_line(p.organization or ""),
        upvotes=p.upvotes,
        upvotes_word="upvote" if p.upvotes == 1 else "upvotes",
        comments=_plural(p.num_comments, "comment"),
        summary=" ".join(summary_raw[:cut].split()) + ellipsis,
        summary_html=summary_html,
        why="; ".join(_one_line(e.describe()) for e in mp.why),
        links=_links(p),
        more_like=f"{_MORE_MARK}/{p.id}" if more_like else "",
    )


def _links(p: Paper) -> tuple[tuple[str, str], ...]:
    candidates = (
        ("arXiv", p.arxiv_url),
        ("PDF", p.pdf_url),
        ("Code", p.github_repo),
        ("Project page", p.project_page),
    )
    return tuple((label, url) for label, raw in candidates if raw and (url := _link(raw)))


def _link(url: str) -> str:
    """safe_url(url), answering plain well-formed http(s) URLs without the per-character scan."""
    if _PLAIN_HTTP_URL.match(url):
        return url
    return safe_url(url)


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


def _cut_at_word(text: str, limit: int) -> int:
    """Where to cut ``text`` to at most ``limit`` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return len(text)
    space = text.rfind(" ", 0, limit + 1)
    cut = space if space > limit // 2 else limit
    return len(text[:cut].rstrip())


# ---------------------------------------------------------------------------------------------- text helpers


def _one_line(value: str) -> str:
    return " ".join(value.translate(_CONTROL_TO_SPACE).split())


def _clip(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: _cut_at_word(value, limit - 1)].rstrip(" ,;:-") + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _matched_labels(papers: Sequence[MatchedPaper], rules: Sequence[Rule]) -> list[str]:
    """The labels of the rules that matched (each paper counts for its first rule), in rule order."""
    matched = {mp.why[0].rule for mp in papers if mp.why}
    ordered = [r.label for r in rules if r.label in matched]
    ordered += sorted(matched.difference(ordered))
    return [label for label in (_one_line(x) for x in ordered) if label]


def _quoted(label: str) -> str:
    # A rule like "flow matching" is quoted once, not twice; other double quotes inside become single ones.
    if len(label) >= 2 and label[0] == label[-1] == '"' and '"' not in label[1:-1]:
        label = label[1:-1]
    return '"' + label.replace('"', "'") + '"'


def _label_phrase(labels: list[str], budget: int) -> str:
    """'"a"', '"a" and "b"' or '"a", "b" and 2 more', as many labels as fit in ``budget`` characters."""
    if not labels:
        return ""
    quoted = [_quoted(_clip(label, LABEL_MAX)) for label in labels]
    for shown in range(min(2, len(quoted)), 0, -1):
        rest = len(quoted) - shown
        phrase = " and ".join(quoted) if rest == 0 else f"{', '.join(quoted[:shown])} and {rest} more"
        if len(phrase) <= budget:
            return phrase
    # Not even one label fits: shorten the first one.
    more = f" and {len(quoted) - 1} more" if len(quoted) > 1 else ""
    room = max(budget - len(more) - 2, 1)
    return _quoted(_clip(labels[0], room)) + more


def _render_subject(title: str, count: int, labels: list[str], date_short: str) -> str:
    """DESIGN.md section 8: 'Paper digest — 7 new papers for "diffusion" (Tue 4 Nov)'; one line, at most
    SUBJECT_MAX characters, the labels cut first (the date stays)."""
    template = _subject_template()
    title = _clip(title, SUBJECT_TITLE_MAX)
    bare = _one_line(template.render(title=title, count=count, labels="", date_short=date_short))
    budget = min(SUBJECT_LABELS_MAX, SUBJECT_MAX - len(bare) - len(" for "))
    phrase = _label_phrase(labels, budget) if budget > 4 else ""
    if not phrase:
        return _clip(bare, SUBJECT_MAX)
    line = _one_line(template.render(title=title, count=count, labels=phrase, date_short=date_short))
    return _clip(line, SUBJECT_MAX)


def _preheader(papers: list[_PaperParts]) -> str:
    if not papers:
        return "No new papers matched your rules this time."
    return _clip("Top: " + " · ".join(p.title for p in papers[:3]), PREHEADER_MAX)


# Padding after the preheader so clients do not pull body text into the inbox preview line.
_PREHEADER_PAD = Markup("&#847;&zwnj;&nbsp;" * 60)


# ---------------------------------------------------------------------------------------------- templates


@cache
def _css_source(name: str) -> str:
    return resources.files("digest").joinpath("templates", "email", name).read_text("utf-8")


@cache
def _inline_style(classes: str) -> str:
    """The style="" value css-inline gives an element with these classes under digest.css."""
    probe = f'<div class="{classes}"></div>'
    inlined = css_inline.inline_fragment(probe, _css_source("digest.css"))
    found = re.search(r'style="([^"]*)"', inlined)
    if not found:
        return ""
    # css-inline writes "color: red;padding: 2px;": drop the optional spaces and final ";" (mail size).
    return ";".join(d.strip().replace(": ", ":", 1) for d in found.group(1).split(";") if d.strip())


def _inline_marks(source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        classes = " ".join(match.group(1).split())
        style = _inline_style(classes)
        styled = f' style="{escape(style)}"' if style else ""
        return f'class="{classes}"{styled}'

    return _CSS_MARK.sub(replace, source)


@cache
def _html_template(name: str) -> Template:
    env = environment()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    # from_string: the environment autoescapes string templates (select_autoescape default_for_string=True).
    return env.from_string(_inline_marks(source))


@cache
def _text_template(name: str) -> Template:
    return environment().get_template(name)


@cache
def _subject_template() -> Template:
    return _text_template(SUBJECT_TEMPLATE)


@cache
def _head_css() -> Markup:
    # Our own file, not user input: safe to emit inside <style> as is.
    return Markup(_css_source("digest-head.css").strip())


def known_classes() -> list[str]:
    """The class names digest.css styles (used by tests to prove every rule is a simple class rule)."""
    return _SIMPLE_CLASS_RULE.findall(_css_source("digest.css"))


_MARK_OPEN = Markup(_inline_marks('<mark css="hl">'))
