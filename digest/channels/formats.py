"""A channel's papers of one day as webhook bodies (pure: no I/O).

``slack``: Block Kit messages for a Slack-compatible incoming webhook. Scraped text is untrusted: ``&``,
``<`` and ``>`` are escaped in every mrkdwn text (so a title cannot mention ``<!channel>`` or forge a
link), control characters become spaces, links are http(s) only. Slack takes at most 50 blocks per message
and 3000 characters per section text: longer posts are split into several messages, and a paper's text is
cut to fit.

``json``: one document ``{"channel", "date", "count", "more", "papers": [paper fields + "why"]}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from digest.models import MatchedPaper
from digest.templating import safe_url

__all__ = [
    "MAX_BLOCKS",
    "MAX_TEXT",
    "ChannelDay",
    "json_messages",
    "messages",
    "slack_escape",
    "slack_messages",
]

#: Slack's limits: blocks per message, characters per section text.
MAX_BLOCKS = 50
MAX_TEXT = 3000
SUMMARY_CHARS = 600
AUTHORS_SHOWN = 3

_CONTROL = {c: " " for c in [*range(0, 32), *range(127, 160), 0x2028, 0x2029]}


@dataclass(frozen=True, slots=True)
class ChannelDay:
    """What one post shows: the channel, the day, the papers (best first) and how many more matched."""

    channel: str
    day: date
    papers: Sequence[MatchedPaper]
    more: int = 0
    title: str = "Paper digest"


def slack_escape(text: str) -> str:
    """Text safe inside Slack mrkdwn: one line per input line, ``&``, ``<`` and ``>`` as entities."""
    return text.translate(_CONTROL).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str) -> str:
    return " ".join(text.translate(_CONTROL).split())


def _link(url: str, label: str) -> str:
    clean = safe_url(url)
    if not clean:
        return slack_escape(label)
    return f"<{slack_escape(clean)}|{slack_escape(label)}>"


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit)
    return text[: space if space > limit // 2 else limit].rstrip() + "…"


def _heading(day: ChannelDay) -> str:
    n = len(day.papers) + day.more
    noun = "paper" if n == 1 else "papers"
    return f"{_one_line(day.title)} — {n} new {noun} for {_one_line(day.channel)} ({day.day:%a %-d %b %Y})"


def paper_text(mp: MatchedPaper, limit: int = MAX_TEXT) -> str:
    """One paper as Slack mrkdwn, at most ``limit`` characters (the summary is cut first)."""
    p = mp.paper
    title = _cut(_one_line(p.title), 300)
    authors = ", ".join(_one_line(a) for a in p.authors[:AUTHORS_SHOWN])
    if len(p.authors) > AUTHORS_SHOWN:
        authors += " et al."
    votes = f"{p.upvotes} upvote{'' if p.upvotes == 1 else 's'}"
    meta = " · ".join(x for x in (_cut(authors, 300), _one_line(p.organization or ""), votes) if x)
    links = [("arXiv", p.arxiv_url), ("PDF", p.pdf_url)]
    if p.github_repo:
        links.append(("Code", p.github_repo))
    if p.project_page:
        links.append(("Project page", p.project_page))
    link_line = " · ".join(_link(url, label) for label, url in links if safe_url(url))
    why = "; ".join(_one_line(e.describe()) for e in mp.why)
    head = f"*{_link(p.url, title)}*\n{slack_escape(meta)}"
    tail = f"\n{link_line}" + (f"\n_matched: {slack_escape(_cut(why, 200))}_" if why else "")
    summary = _one_line(p.ai_summary or p.summary)
    room = limit - len(head) - len(tail) - 1
    body = ""
    if room > 20:
        # Escaping can lengthen the text: cut, escape, and cut again while it does not fit.
        cut = min(SUMMARY_CHARS, room)
        body = slack_escape(_cut(summary, cut))
        while len(body) > room and cut > 20:
            cut = cut * 3 // 4
            body = slack_escape(_cut(summary, cut))
        if len(body) > room:
            body = ""
    text = head + (f"\n{body}" if body else "") + tail
    return text[:limit]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def slack_messages(day: ChannelDay) -> list[dict[str, Any]]:
    """The Block Kit messages of one post: a heading, one section per paper, split every MAX_BLOCKS blocks."""
    heading = slack_escape(_heading(day))
    papers = [_section(paper_text(mp)) for mp in day.papers]
    if day.more:
        papers.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {day.more} more matched today."}],
            }
        )
    per_message = MAX_BLOCKS - 1  # the first block of every message is its heading
    chunks = [papers[i : i + per_message] for i in range(0, len(papers), per_message)] or [[]]
    out = []
    for n, chunk in enumerate(chunks, 1):
        title = heading if len(chunks) == 1 else f"{heading} ({n}/{len(chunks)})"
        out.append({"text": title, "blocks": [_section(f"*{title}*"), *chunk]})
    return out


def json_messages(day: ChannelDay) -> list[dict[str, Any]]:
    """One plain JSON document with every paper's fields and why it matched."""
    return [
        {
            "channel": day.channel,
            "date": day.day.isoformat(),
            "count": len(day.papers),
            "more": day.more,
            "papers": [{**mp.paper.to_json(), "why": [e.describe() for e in mp.why]} for mp in day.papers],
        }
    ]


def messages(fmt: Literal["slack", "json"], day: ChannelDay) -> list[dict[str, Any]]:
    """The bodies to POST, in order, for the channel's format."""
    return slack_messages(day) if fmt == "slack" else json_messages(day)
