"""A subscriber's matched papers as an Atom feed (feedgen; pure: papers in, bytes out).

Entry ids are the papers' arXiv ids (``arXiv:2401.00001``: stable whatever the feed's URL or token);
``updated`` is when the paper was first seen, so an upvote refresh never makes a reader show it again.
The summary is the AI summary when Hugging Face has one, else the abstract; the links go to the paper's
Hugging Face page (alternate), arXiv, the PDF and the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from feedgen.feed import FeedGenerator
from lxml import etree

from digest.models import Paper
from digest.templating import safe_url

#: lxml refuses characters XML 1.0 cannot hold; scraped text may contain them.
_NOT_XML = {c: " " for c in [*range(0, 9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF]}
_ATOM = "{http://www.w3.org/2005/Atom}"
AUTHORS_MAX = 20
KEYWORDS_MAX = 10


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One paper of the feed: when it was first seen and why the subscriber's rules matched it."""

    paper: Paper
    first_seen: datetime
    why: str = ""


def _text(value: str) -> str:
    cleaned = value.translate(_NOT_XML)
    # Lone surrogates cannot be encoded as UTF-8 either.
    return " ".join(cleaned.encode("utf-8", "replace").decode("utf-8").split())


def entry_id(paper: Paper) -> str:
    """The stable Atom id of a paper's entry."""
    return f"arXiv:{paper.id}"


def build_atom(
    *, feed_url: str, site_url: str, title: str, entries: Sequence[FeedEntry], updated: datetime
) -> bytes:
    """The Atom document (UTF-8 bytes), entries newest first as given."""
    fg = FeedGenerator()
    fg.id(feed_url)
    fg.title(_text(title) or "Paper digest")
    fg.subtitle("New Hugging Face Daily Papers matching your rules")
    fg.link(href=feed_url, rel="self", type="application/atom+xml")
    fg.link(href=site_url, rel="alternate", type="text/html")
    fg.updated(updated)
    fg.generator("paper-digest")
    # feedgen writes entries in reverse order of addition (it prepends): add the oldest first.
    for item in reversed(entries):
        _add(fg, item)
    return _with_link_attributes(fg.atom_str(pretty=False), [_links(e.paper) for e in entries])


def _with_link_attributes(data: bytes, links: list[list[dict[str, str]]]) -> bytes:
    """feedgen 1.0 drops rel, type and title from entry links (its writer shadows the link's data):
    put them back, entry by entry and link by link, in the order they were given."""
    root = etree.fromstring(data)
    for entry, wanted in zip(root.iterfind(f"{_ATOM}entry"), links, strict=True):
        for element, spec in zip(entry.iterfind(f"{_ATOM}link"), wanted, strict=True):
            for key, value in spec.items():
                element.set(key, value)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _links(p: Paper) -> list[dict[str, str]]:
    links = [
        {"href": p.url, "rel": "alternate", "type": "text/html", "title": "Hugging Face"},
        {"href": p.arxiv_url, "rel": "related", "type": "text/html", "title": "arXiv"},
        {"href": p.pdf_url, "rel": "related", "type": "application/pdf", "title": "PDF"},
    ]
    for label, url in (("Code", p.github_repo), ("Project page", p.project_page)):
        clean = safe_url(url)
        if clean:
            links.append({"href": clean, "rel": "related", "type": "text/html", "title": label})
    return links


def _add(fg: FeedGenerator, item: FeedEntry) -> None:
    p = item.paper
    fe = fg.add_entry()
    fe.id(entry_id(p))
    fe.title(_text(p.title) or p.id)
    fe.updated(item.first_seen)
    if p.published_at is not None:
        fe.published(p.published_at)
    summary = _text(p.ai_summary or p.summary)
    if item.why:
        summary = f"{summary} (matched: {_text(item.why)})" if summary else f"matched: {_text(item.why)}"
    fe.summary(summary or _text(p.title), type="text")
    for link in _links(p):
        fe.link(**link)
    for name in p.authors[:AUTHORS_MAX]:
        if _text(name):
            fe.author({"name": _text(name)})
    for keyword in p.ai_keywords[:KEYWORDS_MAX]:
        if _text(keyword):
            fe.category(term=_text(keyword))
