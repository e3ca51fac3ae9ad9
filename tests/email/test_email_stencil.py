"""Subscribers whose digests show the same papers share one rendering, filled in with each one's own address
and links (digest.stencil). A shared rendering must give each mail exactly what its own rendering would."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from email_helpers import context, load_day, match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from test_email_size import EVERYTHING, _longest

from digest.models import Rule
from digest.render import HTML_BUDGET, DigestContext, clear_caches, render_digest, render_wire
from digest.stencil import MARKS, NAMES, _Pieces, base64_of, wire_bytes

DAY = date(2026, 8, 21)
AGENTS = Rule("agent*", name="agents")


def _ctx(n: int = 8) -> DigestContext:
    papers = match(load_day("2026-08-21"), [(AGENTS, ("agent", "model"))])[:n]
    assert papers
    return context(papers, [AGENTS], run_date=DAY)


def _personal(ctx: DigestContext, who: str, name: str | None) -> DigestContext:
    return replace(
        ctx,
        recipient=f"{who}@example.org",
        name=name,
        manage_url=f"https://digest.example.org/manage/{who}?a=1&b=2",
        unsubscribe_url=f"https://digest.example.org/u/{who}",
        view_url=f"https://digest.example.org/d/{who}",
        more_like_url=f"https://digest.example.org/more/{who}",
    )


def _cold(ctx: DigestContext) -> tuple[str, str, str]:
    clear_caches()
    mail = render_digest(ctx)
    return mail.subject, mail.html, mail.text


def test_each_subscriber_of_a_shared_rendering_gets_their_own_address_and_links() -> None:
    base = _ctx()
    clear_caches()
    ada = render_digest(_personal(base, "ada", "Ada"))
    bob = render_digest(_personal(base, "bob", "Bob"))  # the same papers: the rendering is shared

    for mail, me, other in ((ada, "ada", "bob"), (bob, "bob", "ada")):
        assert f"{me}@example.org" in mail.html and f"{me}@example.org" in mail.text
        assert f"/manage/{me}?a=1&amp;b=2" in mail.html and f"/manage/{me}?a=1&b=2" in mail.text
        assert f"/more/{me}/" in mail.html and f"/d/{me}" in mail.text
        assert other not in mail.html and other not in mail.text
        assert "\x01" not in mail.html + mail.text
    assert ada.html.count("/more/ada/") == len(ada.shown) > 0


def test_a_shared_rendering_gives_the_same_bytes_as_a_fresh_one() -> None:
    base = _ctx()
    clear_caches()
    render_digest(_personal(base, "ada", "Ada"))
    warm = render_digest(_personal(base, "bob", "Bob"))
    assert (warm.subject, warm.html, warm.text) == _cold(_personal(base, "bob", "Bob"))


def test_a_greeting_and_a_web_view_appear_only_for_those_who_have_them() -> None:
    base = _ctx()
    clear_caches()
    render_digest(_personal(base, "ada", "Ada"))
    nameless = render_digest(replace(_personal(base, "bob", None), view_url=""))
    assert "Hi " not in nameless.text and "/d/bob" not in nameless.html
    assert (nameless.subject, nameless.html, nameless.text) == _cold(
        replace(_personal(base, "bob", None), view_url="")
    )


def test_long_values_that_push_a_shared_mail_past_the_budget_get_their_own_layout() -> None:
    matches = _longest(60)
    short = context(matches, [EVERYTHING], run_date=DAY, max_papers=18, recipient="a@example.org")
    clear_caches()
    first = render_digest(short)
    size = len(first.html.encode("utf-8"))
    # Pick the number of papers so that the short address just fits; a long one then does not.
    for n in range(18, 60):
        first = render_digest(replace(short, max_papers=n))
        size = len(first.html.encode("utf-8"))
        if size > HTML_BUDGET - 600:
            break
    assert HTML_BUDGET - 600 < size <= HTML_BUDGET
    long_ctx = replace(
        short, max_papers=n, recipient="b" * 60 + "@" + "long-domain." * 10 + "org", name="Bea " * 200
    )
    long_mail = render_digest(long_ctx)

    assert len(long_mail.html.encode("utf-8")) <= HTML_BUDGET
    # The shorter mail's layout would not have fitted: papers lost their abstracts or moved out.
    assert long_mail.text.count("\n\n") < first.text.count("\n\n") or len(long_mail.shown) < len(first.shown)
    assert (long_mail.subject, long_mail.html, long_mail.text) == _cold(long_ctx)


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.one_of(st.none(), _text),
    local=st.from_regex(r"[a-z0-9._+-]{1,20}", fullmatch=True),
    query=st.text(st.sampled_from("ab&<>\"'=%;"), max_size=12),
)
def test_any_values_fill_a_shared_rendering_as_their_own_rendering_would(
    name: str | None, local: str, query: str
) -> None:
    base = _ctx(4)
    render_digest(_personal(base, "someone-else", "Other"))  # a rendering to share
    ctx = replace(
        _personal(base, local, name),
        manage_url=f"https://digest.example.org/manage/x?q={query}",
        view_url=f"https://digest.example.org/d/x?q={query}",
    )
    warm = render_digest(ctx)
    wire = render_wire(ctx)  # what a mail's MIME parts encode: the same digest as bytes
    assert (wire.html64, wire.text64) == (base64_of(wire_bytes(warm.html)), base64_of(wire_bytes(warm.text)))
    assert f'href="{escape(ctx.manage_url)}"' in warm.html
    assert f"Manage your rules: {ctx.manage_url}" in warm.text
    assert (warm.subject, warm.html, warm.text) == _cold(ctx)


_piece = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=9)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.tuples(_piece, st.sampled_from(NAMES)), max_size=8),
    last=_piece,
    values=st.fixed_dictionaries({name: st.binary(max_size=8) for name in NAMES}),
)
def test_the_base64_of_a_filled_part_is_the_base64_of_its_bytes(
    pieces: list[tuple[str, str]], last: str, values: dict[str, bytes]
) -> None:
    rendered = "".join(text + MARKS[name] for text, name in pieces) + last
    part = _Pieces.cut(rendered)
    for _ in range(2):  # the second time from the pieces' kept encodings
        assert part.base64(values) == base64_of(part.fill_wire(values))
