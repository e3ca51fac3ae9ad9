"""The digest email as rendered: golden files, grouping and order, highlights, hostile scraped text."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import css_inline
import pytest
from email_helpers import context, load_day, match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import render
from digest.errors import DigestError
from digest.message import Envelope, build_message
from digest.models import Explanation, MatchedPaper, Paper, Rule, Span
from digest.render import DigestContext, render_digest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

AGENTS = Rule("agent*", name="agents")
DIFFUSION = Rule("diffusion")
RL = Rule('"reinforcement learning"', name="reinforcement learning")


# ---------------------------------------------------------------------------------------------- helpers


class _Doc(HTMLParser):
    """Every start tag with its attributes, and the visible text of titles, marks and summaries."""

    VOID = frozenset({"meta", "br", "img", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_by_tag: dict[str, list[str]] = {}
        self._stack: list[tuple[str, str | None, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in self.VOID:
            return
        key: str | None = tag if tag in ("h2", "mark", "title") else None
        if tag == "p" and "summary" in (attributes.get("class") or "").split():
            key = "summary"
        self._stack.append((tag, key, []))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, key, parts = self._stack.pop()
            if key is not None:
                self.text_by_tag.setdefault(key, []).append("".join(parts))
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, key, parts in self._stack:
            if key is not None:
                parts.append(data)


def parse_html(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    doc.close()
    return doc


def subscribers() -> dict[str, DigestContext]:
    """The golden subscribers: four people over the four captured days."""
    ada_papers = load_day("2026-08-21")
    ada = context(
        match(
            ada_papers, [(AGENTS, ("agent",)), (DIFFUSION, ("diffusion",)), (RL, ("reinforcement learning",))]
        ),
        [AGENTS, DIFFUSION, RL],
        run_date=date(2026, 8, 21),
    )
    reasoning = Rule("reasoning")
    bob = context(
        match(load_day("2025-10-15"), [(reasoning, ("reasoning",))]),
        [reasoning],
        run_date=date(2025, 10, 15),
        recipient="bob@example.net",
        name=None,
        max_papers=5,
    )
    video, three_d = Rule("video"), Rule("3D", name="3D")
    chen = context(
        match(load_day("2026-07-27"), [(video, ("video",)), (three_d, ("3d",))]),
        [video, three_d],
        run_date=date(2026, 7, 27),
        recipient="chen@example.com",
        name="陈",
    )
    image = Rule("image")
    dana = context(
        match(load_day("2024-05-27"), [(image, ("image",)), (DIFFUSION, ("diffusion",))]),
        [image, DIFFUSION],
        run_date=date(2024, 5, 27),
        recipient="dana@example.org",
        name="Dana",
    )
    return {"ada": ada, "bob": bob, "chen": chen, "dana": dana}


def masked_eml(raw: bytes) -> str:
    text = raw.decode("ascii")
    boundary = re.search(r'boundary="([^"]+)"', text)
    assert boundary
    text = text.replace(boundary.group(1), "BOUNDARY")
    text = re.sub(r"(?m)^Message-ID: <[^>]+>", "Message-ID: <MASKED>", text)
    return re.sub(r"(?m)^Date: .*$", "Date: MASKED", text)


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE and os.environ.get("CI"):
            pytest.fail(f"{path} is missing: run with UPDATE_GOLDEN=1")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
    with path.open(encoding="utf-8", newline="") as f:
        expected = f.read()
    assert actual == expected, f"{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)"


def paper(**fields: object) -> Paper:
    base: dict[str, object] = {
        "id": "2608.00001",
        "title": "A Paper",
        "summary": "An abstract.",
        "daily_date": date(2026, 8, 21),
        "authors": ("A. Author",),
        "upvotes": 1,
    }
    base.update(fields)
    return Paper(**base)  # type: ignore[arg-type]


def matched(p: Paper, rule: Rule = AGENTS, *spans: Span) -> MatchedPaper:
    return MatchedPaper(p, (Explanation(rule.label, ("agent",), ("title",), tuple(spans)),))


def ctx_for(papers: list[MatchedPaper], rules: list[Rule] | None = None, **kw: object) -> DigestContext:
    return replace(context(papers, rules or [AGENTS], run_date=date(2026, 8, 21)), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("who", ["ada", "bob", "chen", "dana"])
def test_the_digest_matches_its_golden_files(who: str) -> None:
    ctx = subscribers()[who]
    rendered = render_digest(ctx)
    raw = build_message(
        rendered,
        Envelope(
            sender="Paper Digest <digest@example.org>",
            recipient=ctx.recipient,
            list_id="paper-digest.example.org",
            unsubscribe_url=ctx.unsubscribe_url,
            unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe",
            date=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    check_golden(f"{who}.html", rendered.html)
    check_golden(
        f"{who}.txt", f"Subject: {rendered.subject}\nPreheader: {rendered.preheader}\n\n{rendered.text}"
    )
    check_golden(f"{who}.eml", masked_eml(raw))


# ---------------------------------------------------------------------------------------------- structure


def test_papers_are_grouped_by_first_rule_in_rule_order_and_sorted_by_upvotes() -> None:
    ctx = subscribers()["ada"]
    rendered = render_digest(ctx)
    titles = parse_html(rendered.html).text_by_tag["h2"]
    expected: list[str] = []
    for rule in ctx.rules:
        group = [mp.paper for mp in ctx.papers if mp.why[0].rule == rule.label]
        expected += [p.title for p in sorted(group, key=lambda p: -p.upvotes)]
    assert titles == expected
    # A paper matched by two rules is shown once, under its first rule.
    assert len(titles) == len(set(titles)) == len({mp.paper.id for mp in ctx.papers})
    groups = re.findall(r"== \d+ papers? for (.+?) ==", rendered.text)
    assert groups == [r.label for r in ctx.rules if any(mp.why[0].rule == r.label for mp in ctx.papers)]


def test_max_papers_keeps_the_most_upvoted_and_says_how_many_more() -> None:
    ctx = subscribers()["bob"]
    assert len(ctx.papers) > ctx.max_papers
    rendered = render_digest(ctx)
    shown = parse_html(rendered.html).text_by_tag["h2"]
    top = sorted(ctx.papers, key=lambda mp: (-mp.paper.upvotes, -mp.paper.num_comments, mp.paper.id))
    assert shown == [mp.paper.title for mp in top[: ctx.max_papers]]
    # What the pipeline records as delivered is exactly what the mail shows.
    assert {mp.paper.title for mp in render.shown_papers(ctx.papers, ctx.max_papers)} == set(shown)
    by_id = {mp.paper.id: mp.paper.title for mp in ctx.papers}
    assert [by_id[i] for i in rendered.shown] == shown
    more = len(ctx.papers) - ctx.max_papers
    visible = re.sub(r"<[^>]+>", "", rendered.html).replace("&hellip;", "…")
    assert f"…and {more} more on huggingface.co/papers." in visible
    assert 'href="https://huggingface.co/papers/date/2025-10-15"' in rendered.html
    assert (
        f"and {more} more on huggingface.co/papers: https://huggingface.co/papers/date/2025-10-15"
        in rendered.text
    )
    # The subject counts the papers the mail shows ("5 new papers" above 5), not every match.
    assert rendered.subject == f'Paper Digest — {ctx.max_papers} new papers for "reasoning" (Wed 15 Oct)'


def test_one_paper_shows_everything_a_reader_needs() -> None:
    p = paper(
        title="Diffusion Agents",
        authors=("Ann One", "Bo Two", "Cy Three", "Di Four"),
        organization="Example Lab",
        upvotes=42,
        num_comments=3,
        github_repo="https://github.com/example/agents",
        project_page="https://example.org/agents",
        ai_summary="Agents that diffuse.",
        summary="The long abstract that is not shown when an AI summary exists.",
    )
    rendered = render_digest(ctx_for([matched(p, AGENTS, Span("title", 10, 16))]))
    html, text = rendered.html, rendered.text
    for needle in (
        "Ann One, Bo Two, Cy Three et al.",
        "Example Lab",
        "42",
        "3 comments",
        "Agents that diffuse.",
    ):
        assert needle in html and needle in text
    assert "Di Four" not in html and "long abstract" not in html
    hrefs = [a.get("href") for tag, a in parse_html(html).tags if tag == "a"]
    for url in (
        p.url,
        p.arxiv_url,
        p.pdf_url,
        "https://github.com/example/agents",
        "https://example.org/agents",
        "https://digest.example.org/manage/TOKEN-manage",
        "https://digest.example.org/u/TOKEN-unsub",
    ):
        assert url in hrefs and url in text
    assert "Matched: agent in title" in html and "Matched: agent in title" in text
    assert parse_html(html).text_by_tag["mark"] == ["Agents"]
    assert "1 Example Street" in html and "1 Example Street" in text
    assert "this rule" in text and "  - agents" in text


def test_without_an_ai_summary_the_abstract_is_cut_at_a_word_near_400_characters() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    rendered = render_digest(ctx_for([matched(paper(summary=words))]))
    [shown] = parse_html(rendered.html).text_by_tag["summary"]
    assert shown.endswith("…") and 300 < len(shown) <= 401
    assert words.startswith(shown[:-1]) and words[len(shown) - 1] == " "  # the cut falls between words


def test_highlights_clip_spans_beyond_the_shown_abstract_and_merge_overlaps() -> None:
    summary = "alpha beta " * 60
    spans = (
        Span("summary", 0, 5),
        Span("summary", 3, 10),
        Span("summary", 600, 610),
        Span("summary", -4, -1),
    )
    rendered = render_digest(ctx_for([matched(paper(summary=summary), AGENTS, *spans)]))
    assert parse_html(rendered.html).text_by_tag["mark"] == ["alpha beta"]


def _matching(rules: list[Rule], per_rule: int = 1) -> list[MatchedPaper]:
    return [
        MatchedPaper(paper(id=f"2608.{i:02d}{k:03d}"), (Explanation(r.label, (), ()),))
        for i, r in enumerate(rules)
        for k in range(per_rule)
    ]


def test_the_subject_follows_the_design_title_count_rules_and_day() -> None:
    a, b, c, d = (Rule(q) for q in ("diffusion", "agents", "robots", "speech"))

    def subject(rules: list[Rule], n: int = 1, **kw: object) -> str:
        return render_digest(ctx_for(_matching(rules, n), rules, **kw)).subject

    assert subject([a], 7) == 'Paper Digest — 7 new papers for "diffusion" (Fri 21 Aug)'
    assert subject([a]) == 'Paper Digest — 1 new paper for "diffusion" (Fri 21 Aug)'
    assert subject([a, b]) == 'Paper Digest — 2 new papers for "diffusion" and "agents" (Fri 21 Aug)'
    assert (
        subject([a, b, c, d])
        == 'Paper Digest — 4 new papers for "diffusion", "agents" and 2 more (Fri 21 Aug)'
    )
    assert subject([a], title="Lab papers") == 'Lab papers — 1 new paper for "diffusion" (Fri 21 Aug)'
    # Only the rules that matched are named, in the subscriber's order, and a quoted rule is quoted once.
    quoted = Rule('"flow matching"')
    matched = _matching([quoted, a])
    assert (
        render_digest(ctx_for(matched, [b, quoted, a])).subject
        == 'Paper Digest — 2 new papers for "flow matching" and "diffusion" (Fri 21 Aug)'
    )
    assert render_digest(ctx_for([], [a])).subject == "Paper Digest — no new papers (Fri 21 Aug)"


def test_the_subject_counts_the_papers_the_mail_shows_not_every_match() -> None:
    a = Rule("diffusion")
    rendered = render_digest(ctx_for(_matching([a], 6), [a], max_papers=3))
    assert rendered.subject == 'Paper Digest — 3 new papers for "diffusion" (Fri 21 Aug)'
    assert len(rendered.shown) == 3 and "and 3 more" in rendered.text


def test_the_subject_is_one_short_line_that_keeps_the_day() -> None:
    rules = [Rule(f"topic{i}\r\nBcc: evil@example.org" * 3, name="") for i in range(8)]
    subject = render_digest(ctx_for(_matching(rules), rules, title="A very long digest title " * 5)).subject
    assert "\n" not in subject and "\r" not in subject
    assert len(subject) <= render.SUBJECT_MAX
    assert subject.startswith("A very long digest title") and "… — 8 new papers for" in subject
    assert '"topic0' in subject and "and 7 more" in subject and "topic1" not in subject
    assert subject.endswith(" (Fri 21 Aug)")


def test_the_subject_survives_rfc_2047_encoding() -> None:
    import email
    import email.policy

    rules = [Rule("Übersetzung"), Rule('"言語 モデル" OR 翻訳')]
    rendered = render_digest(ctx_for(_matching(rules), rules, title="Digest — Ünïcode"))
    raw = build_message(
        rendered,
        Envelope(
            sender="Paper Digest <digest@example.org>",
            recipient="ann@example.org",
            list_id="paper-digest.example.org",
            unsubscribe_url="https://digest.example.org/u/TOKEN-unsub",
            date=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")) and head.isascii()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject
    assert (
        rendered.subject
        == 'Digest — Ünïcode — 2 new papers for "Übersetzung" and "\'言語 モデル\' OR 翻訳" (Fri 21 Aug)'
    )


def test_an_empty_digest_still_renders_with_its_footer() -> None:
    rendered = render_digest(ctx_for([]))
    assert "No new papers matched" in rendered.html and "No new papers matched" in rendered.text
    assert "https://digest.example.org/u/TOKEN-unsub" in rendered.text


def test_a_digest_without_a_working_unsubscribe_link_is_refused() -> None:
    with pytest.raises(DigestError, match="unsubscribe"):
        render_digest(ctx_for([], unsubscribe_url="javascript:alert(1)"))


def test_the_precomputed_inline_styles_equal_what_css_inline_produces() -> None:
    # The template's styles are inlined once per process; running css-inline on a rendered mail must not
    # change any element's style: the shortcut gives the same result as inlining each message.
    html = render_digest(subscribers()["ada"]).html
    stripped = re.sub(r' style="[^"]*"', "", html.split("<body", 1)[1])
    css = (Path(render.__file__).parent / "templates" / "email" / "digest.css").read_text()
    reinlined = css_inline.inline_fragment("<body" + stripped, css)

    def styles(doc: str) -> list[tuple[str, set[str]]]:
        out = []
        for tag, attrs in parse_html(doc).tags:
            if attrs.get("class"):
                decls = {d.replace(" ", "") for d in (attrs.get("style") or "").split(";") if d.strip()}
                out.append((tag, decls))
        return out

    assert styles(html.split("<body", 1)[1]) == styles(reinlined)
    assert render.known_classes(), "digest.css must hold simple class rules"


# ---------------------------------------------------------------------------------------------- hostile


HOSTILE_TITLE = '<script>alert("x")</script>"><img src=x onerror=alert(1)> Agent\r\nBcc: x@evil.test\x00'


def hostile_paper() -> MatchedPaper:
    p = paper(
        id="2608.66666",
        title=HOSTILE_TITLE,
        summary="</p><iframe src=javascript:alert(1)></iframe> "
        + "A" * 5000
        + " مرحبا بالعالم \u202egnp.exe 🧪",
        authors=('"><svg onload=alert(1)>', "Ünïcødé Naïve", "עברית"),
        organization="<b>Evil Corp</b>",
        github_repo="javascript:alert(document.cookie)",
        project_page="data:text/html,<script>alert(1)</script>",
    )
    start = HOSTILE_TITLE.index("Agent")
    return matched(p, AGENTS, Span("title", 0, 8), Span("title", start, start + 5))


def test_hostile_scraped_text_cannot_inject_markup_or_links() -> None:
    rendered = render_digest(ctx_for([hostile_paper()]))
    doc = parse_html(rendered.html)
    tags = {tag for tag, _ in doc.tags}
    assert not tags & {"script", "img", "iframe", "svg", "b"}
    for _, attrs in doc.tags:
        assert not any(name.startswith("on") for name in attrs)
        href = attrs.get("href")
        if href is not None:
            assert href.startswith("https://"), href
    assert "javascript:" not in rendered.html.lower().replace("src=javascript:alert(1)&gt;", "")
    assert "data:text/html" not in rendered.html
    assert "\x00" not in rendered.html and "\x00" not in rendered.text
    # The escaped text still reads as the original (controls become spaces) and the highlights are real marks.
    [title] = doc.text_by_tag["h2"]
    assert title == HOSTILE_TITLE.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    assert doc.text_by_tag["mark"] == ["<script>", "Agent"]
    assert "Code:" not in rendered.text and "Project page:" not in rendered.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.text(min_size=1, max_size=80),
    spans=st.lists(st.tuples(st.integers(-5, 90), st.integers(-5, 90)), max_size=5),
)
def test_any_title_with_any_spans_renders_as_exactly_its_own_text(
    title: str, spans: list[tuple[int, int]]
) -> None:
    mp = matched(paper(title=title), AGENTS, *(Span("title", s, e) for s, e in spans))
    html = render_digest(ctx_for([mp])).html
    doc = parse_html(html)
    expected = title.translate(render._CONTROL_TO_SPACE)
    # HTMLParser (like browsers) folds CR and CRLF into LF inside text.
    assert doc.text_by_tag["h2"] == [expected.replace("\r\n", "\n").replace("\r", "\n")]
    assert {tag for tag, _ in doc.tags} <= {
        "html", "head", "meta", "title", "style", "body", "div", "table", "tr", "td", "p", "h1", "h2", "a", "span", "mark", "br",
    }  # fmt: skip


def test_a_cached_paper_block_is_reused_only_for_the_very_same_match() -> None:
    first = paper(upvotes=5, title="Agents at Work")
    mp = matched(first, AGENTS, Span("title", 0, 6))
    before = render_digest(ctx_for([mp]))
    assert render_digest(ctx_for([mp])) == before  # served from the cache, identical
    # Upvotes refreshed, or another reason to match: the block is rendered again, never stale.
    again = render_digest(ctx_for([matched(replace(first, upvotes=9), AGENTS, Span("title", 0, 6))]))
    assert "</span>9</span> upvotes" in again.html and "</span>5</span>" not in again.html
    other = render_digest(ctx_for([matched(first, AGENTS, Span("title", 10, 14))]))
    assert parse_html(other.html).text_by_tag["mark"] == ["Work"]
    render.clear_caches()
    assert render_digest(ctx_for([mp])) == before
