"""Gmail clips an HTML part above 102 KB, and the unsubscribe link goes with the rest: the digest's HTML
stays under 90 KB whatever ``max_papers`` says. Tested with the longest real papers of the captured days."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

from email_helpers import FIXTURE_DAYS, context, load_day

from digest.models import Explanation, MatchedPaper, Paper, Rule, Span
from digest.paperblocks import paper_parts
from digest.render import HTML_BUDGET, render_digest

EVERYTHING = Rule("the", name="everything")
DAY = date(2026, 8, 21)


def _longest(n: int) -> list[MatchedPaper]:
    """The ``n`` longest real papers of the captured days (title, abstract, authors), each matched with
    highlights in its title and abstract. The captured days hold 70 papers: past that, the longest ones come
    again under new ids (a busy week of long papers)."""
    papers: dict[str, Paper] = {}
    for day in FIXTURE_DAYS:
        papers.update((p.id, p) for p in load_day(day))
    size = lambda p: len(p.title) + len(p.ai_summary or p.summary) + sum(map(len, p.authors))  # noqa: E731
    ranked = sorted(papers.values(), key=size, reverse=True)
    chosen = [
        replace(p, id=f"{p.id}{i // len(ranked) or ''}", upvotes=p.upvotes + i % 7)
        for i, p in ((i, ranked[i % len(ranked)]) for i in range(n))
    ]
    out = []
    for p in chosen:
        text = p.ai_summary or p.summary
        field = "ai_summary" if p.ai_summary else "summary"
        spans = [Span("title", 0, min(5, len(p.title)))]
        spans += [Span(field, m.start(), m.end()) for m in re.finditer(r"\bthe\b", text)]
        why = Explanation(
            rule=EVERYTHING.label, terms=("the",), fields=("title", "abstract"), spans=tuple(spans)
        )
        out.append(MatchedPaper(paper=p, why=(why,)))
    return out


def _html_bytes(html: str) -> int:
    return len(html.encode("utf-8"))


def test_a_hundred_of_the_longest_papers_stay_under_the_budget_with_the_unsubscribe_link() -> None:
    matches = _longest(100)
    assert len(matches) == 100
    ctx = context(matches, [EVERYTHING], run_date=DAY, max_papers=100)
    uncapped = sum(
        _html_bytes(render_digest(replace(ctx, papers=[m], max_papers=1)).html) for m in matches[:5]
    )
    assert uncapped / 5 * 100 > 2 * HTML_BUDGET  # without the budget the mail would be far past it

    mail = render_digest(ctx)
    assert _html_bytes(mail.html) < HTML_BUDGET < 102_400
    assert 'href="https://digest.example.org/u/TOKEN-unsub"' in mail.html
    assert "https://digest.example.org/u/TOKEN-unsub" in mail.text
    shown = len(mail.shown)
    assert 0 < shown < 100
    # The subject and the count line count what is shown; the rest is one "and N more" line that, with
    # no web view of the digest to hold them, links to the manage page to narrow the rules.
    assert f"{shown} new papers" in mail.subject
    assert f"here are the {shown} most upvoted" in mail.text
    assert f"and {100 - shown} more" in mail.html and f"and {100 - shown} more" in mail.text
    more_line = mail.html.split(f"and {100 - shown} more", 1)[1].split("</td>", 1)[0]
    assert 'href="https://digest.example.org/manage/TOKEN-manage"' in more_line


def test_past_the_budget_the_least_upvoted_lose_their_abstracts_first() -> None:
    matches = _longest(45)
    ranked = sorted(matches, key=lambda m: (-m.paper.upvotes, -m.paper.num_comments, m.paper.id))
    mail = render_digest(context(matches, [EVERYTHING], run_date=DAY, max_papers=100))
    assert _html_bytes(mail.html) < HTML_BUDGET
    assert len(mail.shown) == 45 and "fit in one mail" not in mail.html  # abstracts were enough
    with_abstract = [m for m in ranked if _with_abstract(m, mail.html)]
    without = [m for m in ranked if not _with_abstract(m, mail.html)]
    assert with_abstract and without
    # Every paper that kept its abstract outranks every one that lost it.
    assert ranked.index(with_abstract[-1]) < ranked.index(without[0])


def test_then_the_least_upvoted_move_to_the_and_more_line() -> None:
    matches = _longest(100)
    ranked = sorted(matches, key=lambda m: (-m.paper.upvotes, -m.paper.num_comments, m.paper.id))
    mail = render_digest(context(matches, [EVERYTHING], run_date=DAY, max_papers=100))
    shown = set(mail.shown)
    assert shown == {m.paper.id for m in ranked[: len(shown)]}
    # Papers move out only once no abstract is left to drop.
    assert not [m for m in ranked[: len(shown)] if _with_abstract(m, mail.html)]


def test_a_mail_that_fits_keeps_every_abstract_and_has_no_cut_line() -> None:
    matches = _longest(100)[:10]
    mail = render_digest(context(matches, [EVERYTHING], run_date=DAY, max_papers=100))
    assert len(mail.shown) == 10
    assert all(_with_abstract(m, mail.html) for m in matches)
    assert "fit in one mail" not in mail.html


def test_the_and_more_line_links_to_the_web_view_when_there_is_one() -> None:
    view = "https://digest.example.org/d/TOKEN-view"
    ctx = context(_longest(100), [EVERYTHING], run_date=DAY, max_papers=100)
    mail = render_digest(replace(ctx, view_url=view))
    # The budget counts the whole mail: the "View in your browser" link at the top included.
    assert _html_bytes(mail.html) < HTML_BUDGET
    assert f'<a href="{view}"' in mail.html.split("<h1", 1)[0] and "View in your browser" in mail.html
    more = 100 - len(mail.shown)
    assert more > 0
    more_line = mail.html.split(f"and {more} more", 1)[1].split("</td>", 1)[0]
    assert f'href="{view}"' in more_line and "web version of this digest" in more_line
    assert f"and {more} more on the web version of this digest: {view}" in mail.text
    # The web view holds them all, so the mail does not send the reader to narrow their rules.
    assert "fit in one mail" not in mail.html and "manage/TOKEN-manage" not in more_line


def test_the_web_view_of_a_digest_is_not_cut_for_size() -> None:
    ctx = context(_longest(100), [EVERYTHING], run_date=DAY, max_papers=100)
    page = render_digest(replace(ctx, view_url="https://digest.example.org/archive/T", html_budget=None))
    assert len(page.shown) == 100 and _html_bytes(page.html) > HTML_BUDGET
    assert all(_with_abstract(m, page.html) for m in _longest(100))


def _with_abstract(m: MatchedPaper, html: str) -> bool:
    """Whether the mail shows this paper's whole block, abstract included."""
    return str(paper_parts([m])[0].html) in html
