"""Storing papers and the delivered-papers diff, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from console_seed import subscriber_row

from digest.models import Paper
from digest.sources import papers_from_api_json
from digest.store.bulk import OutcomeRows, record_rows
from digest.store.papers import delivered_ids, load_papers, upsert_papers
from digest.store.tables import delivered_paper, paper, subscriber

T0 = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)
DAY = date(2026, 8, 21)


def _fixture_papers(hf_fixtures: Path, day: str = "2026-08-21") -> list[Paper]:
    data = json.loads((hf_fixtures / f"api_daily_papers_date-{day}.json").read_text(encoding="utf-8"))
    return papers_from_api_json(data, day=date.fromisoformat(day))


def _seen(engine: sa.Engine, paper_id: str) -> tuple[datetime, datetime]:
    with engine.connect() as conn:
        first, last = conn.execute(
            sa.select(paper.c.first_seen_at, paper.c.last_seen_at).where(paper.c.id == paper_id)
        ).one()
    # SQLite returns naive UTC values.
    return first.replace(tzinfo=first.tzinfo or UTC), last.replace(tzinfo=last.tzinfo or UTC)


def _add_subscriber(engine: sa.Engine, email: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                sa.insert(subscriber).values(**subscriber_row(email, T0)).returning(subscriber.c.id)
            ).scalar_one()
        )


def _deliver(engine: sa.Engine, subscriber_id: int, paper_ids: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(delivered_paper),
            [{"subscriber_id": subscriber_id, "paper_id": pid, "delivered_at": T0} for pid in paper_ids],
        )


def test_stored_papers_load_back_field_for_field(engine: sa.Engine, hf_fixtures: Path) -> None:
    papers = _fixture_papers(hf_fixtures)
    assert upsert_papers(engine, papers, T0) == 17
    loaded = load_papers(engine, DAY, DAY)
    assert sorted(loaded, key=lambda p: p.id) == sorted(papers, key=lambda p: p.id)
    assert [p.upvotes for p in loaded] == sorted((p.upvotes for p in papers), reverse=True)
    assert all(p.published_at is None or p.published_at.tzinfo is not None for p in loaded)


def test_upsert_keeps_first_seen_and_refreshes_upvotes(engine: sa.Engine, hf_fixtures: Path) -> None:
    papers = _fixture_papers(hf_fixtures)
    upsert_papers(engine, papers, T0)
    later = T0 + timedelta(hours=5)
    changed = [
        dataclasses.replace(papers[0], upvotes=999, num_comments=42, title="A corrected title"),
        *papers[1:],
    ]
    assert upsert_papers(engine, changed, later) == 17
    (stored,) = [p for p in load_papers(engine, DAY, DAY) if p.id == papers[0].id]
    assert (stored.upvotes, stored.num_comments, stored.title) == (999, 42, "A corrected title")
    assert _seen(engine, papers[0].id) == (T0, later)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(paper)).scalar_one() == 17


def test_a_poorer_later_fetch_does_not_erase_known_fields(engine: sa.Engine, hf_fixtures: Path) -> None:
    rich = _fixture_papers(hf_fixtures)[0]
    upsert_papers(engine, [rich], T0)
    # What the HTML fallback or the 2024 schema would give: no AI fields, links or organisation.
    poor = dataclasses.replace(
        rich,
        ai_summary=None,
        ai_keywords=(),
        github_repo=None,
        github_stars=None,
        organization=None,
        upvotes=170,
    )
    upsert_papers(engine, [poor], T0 + timedelta(hours=1))
    (stored,) = load_papers(engine, DAY, DAY)
    assert stored == dataclasses.replace(rich, upvotes=170)
    # But new values do replace old ones.
    renamed = dataclasses.replace(rich, ai_keywords=("agents",), github_stars=20)
    upsert_papers(engine, [renamed], T0 + timedelta(hours=2))
    (stored,) = load_papers(engine, DAY, DAY)
    assert (stored.ai_keywords, stored.github_stars) == (("agents",), 20)


def test_a_paper_listed_again_on_a_later_day_moves_forward_only(engine: sa.Engine, hf_fixtures: Path) -> None:
    p = _fixture_papers(hf_fixtures)[0]
    upsert_papers(engine, [dataclasses.replace(p, daily_date=DAY - timedelta(days=1))], T0)
    upsert_papers(engine, [p], T0)
    upsert_papers(engine, [dataclasses.replace(p, daily_date=DAY - timedelta(days=2))], T0)
    assert [x.daily_date for x in load_papers(engine, DAY - timedelta(days=5), DAY)] == [DAY]


def test_duplicate_ids_in_one_batch_are_one_row(engine: sa.Engine, hf_fixtures: Path) -> None:
    p = _fixture_papers(hf_fixtures)[0]
    older = dataclasses.replace(p, daily_date=DAY - timedelta(days=1), upvotes=1)
    assert upsert_papers(engine, [p, older, p], T0) == 1
    (stored,) = load_papers(engine, DAY - timedelta(days=3), DAY)
    assert stored.daily_date == DAY


def test_bulk_upsert_of_many_papers_in_chunks(engine: sa.Engine, hf_fixtures: Path) -> None:
    base = _fixture_papers(hf_fixtures)
    many = [dataclasses.replace(base[i % 17], id=f"2608.{10000 + i}") for i in range(1200)]
    assert upsert_papers(engine, many, T0) == 1200
    assert upsert_papers(engine, many, T0 + timedelta(hours=1)) == 1200
    assert len(load_papers(engine, DAY, DAY)) == 1200


def test_load_papers_takes_the_window_and_the_upvote_floor(engine: sa.Engine, hf_fixtures: Path) -> None:
    upsert_papers(engine, _fixture_papers(hf_fixtures), T0)
    upsert_papers(engine, _fixture_papers(hf_fixtures, "2026-07-27"), T0)
    upsert_papers(engine, _fixture_papers(hf_fixtures, "2025-10-15"), T0)
    assert len(load_papers(engine, date(2026, 7, 1), date(2026, 8, 31))) == 31
    assert len(load_papers(engine, date(2026, 7, 27), date(2026, 7, 27))) == 14
    assert load_papers(engine, date(2026, 8, 22), date(2026, 8, 30)) == []
    popular = load_papers(engine, date(2025, 1, 1), date(2026, 12, 31), min_upvotes=50)
    assert popular and all(p.upvotes >= 50 for p in popular)
    assert [p.daily_date for p in popular] == sorted((p.daily_date for p in popular), reverse=True)


def test_delivered_ids_answers_for_many_subscribers_at_once(engine: sa.Engine, hf_fixtures: Path) -> None:
    papers = _fixture_papers(hf_fixtures)
    upsert_papers(engine, papers, T0)
    ids = [p.id for p in papers]
    alice = _add_subscriber(engine, "alice@example.org")
    bob = _add_subscriber(engine, "bob@example.org")
    carol = _add_subscriber(engine, "carol@example.org")
    _deliver(engine, alice, ids[:3])
    _deliver(engine, bob, ids[2:4])
    got = delivered_ids(engine, [alice, bob, carol], ids[:10])
    assert got == {alice: set(ids[:3]), bob: set(ids[2:4]), carol: set()}
    assert delivered_ids(engine, [alice], ids[5:]) == {alice: set()}
    assert delivered_ids(engine, [], ids) == {}


def test_papers_recorded_together_read_back_like_any_row_and_keep_the_first_delivery(
    engine: sa.Engine, hf_fixtures: Path
) -> None:
    papers = _fixture_papers(hf_fixtures)
    upsert_papers(engine, papers, T0)
    ada, bob = _add_subscriber(engine, "ada@example.org"), _add_subscriber(engine, "bob@example.org")
    _deliver(engine, ada, [papers[0].id])  # delivered yesterday: that record stays as it was
    later = T0 + timedelta(days=1, microseconds=123456)
    rows = [
        {"subscriber_id": sub, "paper_id": p.id, "run_id": None, "delivered_at": later}
        for sub in (ada, bob)
        for p in papers[:3]
    ]
    with engine.begin() as conn:
        record_rows(conn, OutcomeRows(rows=[], delivered=rows, sent_to=[]), later)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                delivered_paper.c.subscriber_id, delivered_paper.c.paper_id, delivered_paper.c.delivered_at
            )
        ).all()
    when = {(s, p): at.replace(tzinfo=at.tzinfo or UTC) for s, p, at in stored}
    assert set(when) == {(sub, p.id) for sub in (ada, bob) for p in papers[:3]}
    assert when[ada, papers[0].id] == T0
    assert {when[k] for k in when if k != (ada, papers[0].id)} == {later}
    assert delivered_ids(engine, [ada, bob], [p.id for p in papers]) == {
        ada: {p.id for p in papers[:3]},
        bob: {p.id for p in papers[:3]},
    }
