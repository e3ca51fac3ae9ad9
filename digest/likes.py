"""like: rules at run time: embed stored papers, find the liked papers, build the similarity index.

Everything here is a no-op when ``[semantic] enabled`` is false or the extra is not installed, and then
nothing heavy is imported. Papers are embedded once, when stored, and never recomputed; a liked paper
older than the window is looked up in the store, and fetched from Hugging Face by id when it is not
there (a paper from the Daily Papers list is then stored like any other; one that never was is embedded
and remembered for the life of the process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from digest.config import Config
from digest.errors import RuleError, SourceError
from digest.models import Paper, Subscriber
from digest.rules import parse_cached
from digest.rules.like_scores import LikeScores
from digest.rules.like_support import MISSING_EXTRA, extra_installed
from digest.sources.hf_paper import fetch_paper
from digest.store.db import Engine
from digest.store.embeddings import (
    like_rule_queries,
    load_embeddings,
    paper_titles,
    papers_without_embedding,
    save_embeddings,
)
from digest.store.lookups import papers_by_ids
from digest.store.papers import upsert_papers
from digest.tokens import make_token

if TYPE_CHECKING:  # numpy comes with the extra: imported only when like: rules are on
    from digest.rules.semantic import SemanticIndex

log = logging.getLogger("digest.likes")

T = TypeVar("T")
#: Liked papers fetched from HF per index build: a flood of unknown ids cannot stall a run.
MAX_FETCHES = 20
#: After a failed fetch, the id is not asked again for this long.
RETRY_FETCH_S = 3600.0

_lock = threading.Lock()
_unlisted: dict[str, tuple[str, bytes]] = {}  # id -> (title, embedding) of papers never on the list
_failed: dict[str, float] = {}  # id -> monotonic time of the last failed fetch


def enabled(config: Config) -> bool:
    """Whether like: rules work here: the extra is installed and ``[semantic] enabled`` is true."""
    return config.semantic.enabled and extra_installed()


def config_problems(config: Config) -> list[str]:
    """check-config lines about the [semantic] section and the like: rules of [[subscribers]]."""
    problems: list[str] = []
    if config.semantic.enabled and not extra_installed():
        problems.append(f"{config.path}: semantic.enabled: {MISSING_EXTRA}")
    if not config.semantic.enabled:
        for i, entry in enumerate(config.subscribers):
            for j, query in enumerate(entry.rules):
                try:
                    has_like = bool(parse_cached(query).likes)
                except RuleError:
                    continue  # reported by the rule check itself
                if has_like:
                    problems.append(
                        f"{config.path}: subscribers.{i}.rules.{j}: like: rules need [semantic] enabled = true"
                    )
    return problems


def liked_ids(queries: Iterable[str]) -> list[str]:
    """The distinct paper ids named by ``like:`` in these rules (unparseable rules are ignored)."""
    found: dict[str, None] = {}
    for query in queries:
        try:
            for like in parse_cached(query).likes:
                found[like.paper_id] = None
        except RuleError:
            continue
    return list(found)


def embed_new(config: Config, engine: Engine, *, batch: int = 256) -> int:
    """Embed every stored paper that has no embedding yet; return how many were embedded."""
    if not enabled(config):
        return 0
    from digest.embeddings import embed_papers

    done = 0
    while papers := papers_without_embedding(engine, limit=batch):
        save_embeddings(engine, embed_papers(papers))
        done += len(papers)
        if len(papers) < batch:
            break
    if done:
        log.info("embedded %d papers", done)
    return done


def scores_for(config: Config, engine: Engine, papers: Sequence[Paper]) -> LikeScores | None:
    """The similarity index of ``papers`` (in this order) to every paper liked in any stored rule.

    None when like: rules are off here (the matcher then matches no like: rule).
    """
    if not enabled(config):
        return None
    liked = liked_ids(like_rule_queries(engine))
    return build_index(config, engine, papers, liked) if liked else None


def build_index(
    config: Config, engine: Engine, papers: Sequence[Paper], liked: Sequence[str]
) -> SemanticIndex:
    """A digest.rules.semantic.SemanticIndex of ``papers`` against the ``liked`` paper ids."""
    from digest.rules.semantic import Liked, SemanticIndex, from_bytes

    window = _embeddings(engine, papers)
    found = liked_papers(config, engine, liked)
    return SemanticIndex(
        [from_bytes(b) if (b := window.get(p.id)) is not None else None for p in papers],
        {pid: Liked(title, from_bytes(blob)) for pid, (title, blob) in found.items()},
        config.semantic.threshold,
    )


def _embeddings(engine: Engine, papers: Sequence[Paper]) -> dict[str, bytes]:
    """The stored embeddings of ``papers``; any paper stored before the extra was on is embedded now."""
    from digest.embeddings import embed_papers

    blobs = load_embeddings(engine, [p.id for p in papers])
    late = [p for p in papers if p.id not in blobs]
    if late:
        fresh = embed_papers(late)
        save_embeddings(engine, fresh)
        blobs.update(fresh)
    return blobs


def liked_papers(config: Config, engine: Engine, ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """(title, embedding) of each liked paper that can be found: the store, else HF by id."""
    from digest.embeddings import embed_papers

    blobs = load_embeddings(engine, ids)
    titles = paper_titles(engine, ids)
    stored_bare = [pid for pid in ids if pid in titles and pid not in blobs]
    if stored_bare:
        fresh = embed_papers(papers_by_ids(engine, stored_bare))
        save_embeddings(engine, fresh)
        blobs.update(fresh)
    out = {pid: (titles[pid], blobs[pid]) for pid in ids if pid in blobs and pid in titles}
    with _lock:
        out.update({pid: _unlisted[pid] for pid in ids if pid not in out and pid in _unlisted})
        now = time.monotonic()
        unknown = [
            pid for pid in ids if pid not in out and now - _failed.get(pid, -RETRY_FETCH_S) >= RETRY_FETCH_S
        ]
    for pid in unknown[:MAX_FETCHES]:
        got = fetch_liked(config, engine, pid)
        if got is not None:
            out[pid] = got
    return out


def fetch_liked(config: Config, engine: Engine, paper_id: str) -> tuple[str, bytes] | None:
    """Fetch one liked paper from HF by id and embed it (stored when it was on the list); None if not found."""
    from digest.embeddings import embed_papers

    try:
        fetched = _run(fetch_paper(config.source, paper_id))
    except SourceError as exc:
        log.warning("liked paper %s could not be fetched: %s", paper_id, exc)
        fetched = None
    if fetched is None:
        with _lock:
            _failed[paper_id] = time.monotonic()
        return None
    blob = embed_papers([fetched.paper])[paper_id]
    if fetched.on_daily_list:
        upsert_papers(engine, [fetched.paper], datetime.now(UTC))
        save_embeddings(engine, {paper_id: blob})
    else:
        with _lock:
            _unlisted[paper_id] = (fetched.paper.title, blob)
    return fetched.paper.title, blob


def forget_fetches() -> None:
    """Drop the per-process memory of fetched and failed liked papers (tests)."""
    with _lock:
        _unlisted.clear()
        _failed.clear()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def require(config: Config) -> None:
    """Raise a one-line DigestError unless like: rules work here (extra installed and enabled)."""
    from digest.errors import DigestError

    if not extra_installed():
        raise DigestError(MISSING_EXTRA)
    if not config.semantic.enabled:
        raise DigestError(f"{config.path}: semantic.enabled: like: rules need [semantic] enabled = true")


def index_for_query(
    config: Config, engine: Engine, papers: Sequence[Paper], query: str, *, stored: bool
) -> LikeScores | None:
    """The similarity index for one rule (``digest match``); None when the rule has no like:.

    ``stored`` papers use (and fill) their stored embeddings; papers from a file are embedded in memory.
    """
    wanted = liked_ids([query])
    if not wanted:
        return None
    require(config)
    if stored:
        return build_index(config, engine, papers, wanted)
    from digest.embeddings import embed_papers
    from digest.rules.semantic import Liked, SemanticIndex, from_bytes

    window = embed_papers(papers)
    in_file = {p.id: (p.title, window[p.id]) for p in papers if p.id in wanted}
    found = {**liked_papers(config, engine, [w for w in wanted if w not in in_file]), **in_file}
    return SemanticIndex(
        [from_bytes(window[p.id]) for p in papers],
        {pid: Liked(title, from_bytes(blob)) for pid, (title, blob) in found.items()},
        config.semantic.threshold,
    )


def more_like_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The subscriber's "More like this" link without the paper id; "" when like: rules are off here."""
    if not enabled(config):
        return ""
    token = make_token(secret, "more", sub.id, sub.token_version)
    return f"{config.web.base_url.rstrip('/')}/more/{token}"
