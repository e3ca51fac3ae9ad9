"""like: rules with the real model (all-MiniLM-L6-v2 from the installed extra), on SQLite and PostgreSQL.

Papers are embedded when stored and never recomputed; a liked paper older than the window is fetched from
HF by id (a local server playing the captured days); planning picks the papers nearest the liked one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hf_papers import PaperServer
from semantic_helpers import without_extra

from digest import likes
from digest.config import Config
from digest.config_load import parse_config
from digest.demo.snapshot_server import SnapshotServer
from digest.models import Rule, SubscriberStatus
from digest.planning import fetch_and_store, plan_run, stored_papers
from digest.rules import select_papers
from digest.rules.semantic import DIMENSIONS, from_bytes
from digest.sources import papers_from_file
from digest.store.embeddings import load_embeddings, papers_without_embedding, save_embeddings
from digest.store.papers import upsert_papers
from digest.store.subscribers import add_subscriber
from digest.store.tables import paper

__all__ = ["without_extra"]  # the fixture, asked for by name

NOW = datetime(2026, 7, 27, 12, 0, tzinfo=UTC)
WINDOW_DAY = date(2026, 7, 27)
OLD_DAY_FILE = "api_daily_papers_date-2025-10-15.json"
WINDOW_FILE = "api_daily_papers_date-2026-07-27.json"
LIKED = "2510.11057"  # Temporal Alignment Guidance: On-Manifold Sampling in Diffusion Models (2025-10-15)
DIFFUSION_TWIN = "2607.22091"  # Spectral Prior for Reducing Exposure Bias in Diffusion Models (2026-07-27)


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> Iterator[None]:
    likes.forget_fetches()
    yield
    likes.forget_fetches()


@pytest.fixture
def hf_papers(hf_fixtures: Path) -> Iterator[PaperServer]:
    with PaperServer([hf_fixtures / OLD_DAY_FILE, hf_fixtures / WINDOW_FILE]) as server:
        yield server


def semantic_config(tmp_path: Path, hf_url: str, **semantic: object) -> Config:
    return parse_config(
        {
            "source": {"base_url": hf_url, "lookback_days": 0, "timeout_s": 5},
            "web": {"base_url": "https://digest.example.org"},
            "semantic": {"enabled": True, "threshold": 0.5, **semantic},
        },
        tmp_path / "config.toml",
    )


def test_papers_are_embedded_when_stored_and_never_recomputed(
    engine: sa.Engine, hf_fixtures: Path, tmp_path: Path
) -> None:
    with SnapshotServer(hf_fixtures) as hf:
        config = semantic_config(tmp_path, hf.base_url)
        import asyncio

        fetched = asyncio.run(fetch_and_store(config, engine, WINDOW_DAY, now=NOW))
    assert len(fetched) == 14
    assert papers_without_embedding(engine) == []
    blobs = load_embeddings(engine, [p.id for p in fetched])
    assert set(blobs) == {p.id for p in fetched}
    vectors = [from_bytes(b) for b in blobs.values()]
    assert all(v.dtype == np.float32 and v.shape == (DIMENSIONS,) for v in vectors)
    assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-4 for v in vectors)
    # A second write (another process, a refetch) never replaces a stored embedding.
    assert save_embeddings(engine, {DIFFUSION_TWIN: b"\0" * (DIMENSIONS * 4)}) == 0
    assert load_embeddings(engine, [DIFFUSION_TWIN])[DIFFUSION_TWIN] == blobs[DIFFUSION_TWIN]
    assert likes.embed_new(config, engine) == 0
    # The blob survives a refetch of the day (upvotes change; the embedding stays).
    upsert_papers(engine, fetched, NOW)
    assert load_embeddings(engine, [DIFFUSION_TWIN])[DIFFUSION_TWIN] == blobs[DIFFUSION_TWIN]


def test_nothing_is_embedded_when_semantic_is_off(
    engine: sa.Engine, hf_fixtures: Path, tmp_path: Path
) -> None:
    config = semantic_config(tmp_path, "http://127.0.0.1:9", enabled=False)
    upsert_papers(engine, papers_from_file(hf_fixtures / WINDOW_FILE), NOW)
    assert likes.embed_new(config, engine) == 0
    assert likes.scores_for(config, engine, stored_papers(config, engine, WINDOW_DAY)) is None
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).where(paper.c.embedding.is_not(None))) == 0


def test_a_liked_paper_older_than_the_window_is_fetched_by_id_stored_and_its_neighbours_planned(
    engine: sa.Engine, hf_fixtures: Path, hf_papers: PaperServer, tmp_path: Path
) -> None:
    config = semantic_config(tmp_path, hf_papers.base_url)
    upsert_papers(engine, papers_from_file(hf_fixtures / WINDOW_FILE), NOW)
    likes.embed_new(config, engine)
    sub = add_subscriber(
        engine, "ada@example.org", [f"like:{LIKED}"], now=NOW, status=SubscriberStatus.ACTIVE
    )
    plan = plan_run(config, engine, WINDOW_DAY)
    assert hf_papers.requests == [f"/api/papers/{LIKED}"]
    planned = next(p.paper_ids for p in plan if p.subscriber_id == sub.id)
    assert DIFFUSION_TWIN in planned, "the diffusion paper of the day is the closest to a diffusion paper"
    assert "2607.19636" not in planned  # speaker verification is about something else
    # The liked paper was on the Daily Papers list: it is stored now, with its embedding, outside the window.
    assert LIKED in load_embeddings(engine, [LIKED])
    assert LIKED not in {p.id for p in stored_papers(config, engine, WINDOW_DAY)}
    plan_run(config, engine, WINDOW_DAY)
    assert len(hf_papers.requests) == 1, "a stored liked paper is never fetched again"


def test_the_nearest_papers_explain_their_similarity_and_the_threshold_cuts(
    engine: sa.Engine, hf_fixtures: Path, hf_papers: PaperServer, tmp_path: Path
) -> None:
    window = papers_from_file(hf_fixtures / WINDOW_FILE)
    upsert_papers(engine, window, NOW)
    loose = likes.build_index(semantic_config(tmp_path, hf_papers.base_url), engine, window, [LIKED])
    ranked = loose.nearest(LIKED, 3)
    assert window[ranked[0][0]].id == DIFFUSION_TWIN
    assert ranked[0][1] > ranked[1][1] > ranked[2][1]
    strict = likes.build_index(
        semantic_config(tmp_path, hf_papers.base_url, threshold=ranked[0][1] - 1e-4), engine, window, [LIKED]
    )
    assert [i for i in range(len(window)) if strict.bits(LIKED) >> i & 1] == [ranked[0][0]]


def test_an_unknown_liked_paper_matches_nothing_and_is_not_asked_for_again_at_once(
    engine: sa.Engine, hf_fixtures: Path, hf_papers: PaperServer, tmp_path: Path
) -> None:
    config = semantic_config(tmp_path, hf_papers.base_url)
    window = papers_from_file(hf_fixtures / WINDOW_FILE)
    upsert_papers(engine, window, NOW)
    index = likes.build_index(config, engine, window, ["2501.00000"])
    assert index.bits("2501.00000") == 0
    likes.build_index(config, engine, window, ["2501.00000"])
    assert hf_papers.requests == ["/api/papers/2501.00000"]


def test_without_the_extra_stored_like_rules_match_nothing_and_the_rest_works_as_before(
    engine: sa.Engine, hf_fixtures: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = semantic_config(tmp_path, "http://127.0.0.1:9")
    upsert_papers(engine, papers_from_file(hf_fixtures / WINDOW_FILE), NOW)
    sub = add_subscriber(
        engine, "ada@example.org", [f"like:{LIKED}", "diffusion"], now=NOW, status=SubscriberStatus.ACTIVE
    )
    request.getfixturevalue("without_extra")  # the extra is uninstalled after the rule was saved
    assert not likes.enabled(config)
    assert likes.more_like_url(config, "x" * 40, sub) == ""
    (planned,) = [p.paper_ids for p in plan_run(config, engine, WINDOW_DAY) if p.subscriber_id == sub.id]
    keyword_only = select_papers(papers_from_file(hf_fixtures / WINDOW_FILE), [Rule("diffusion")])
    assert DIFFUSION_TWIN in planned
    assert sorted(planned) == sorted(m.paper.id for m in keyword_only)  # the keyword rule alone
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).where(paper.c.embedding.is_not(None))) == 0
