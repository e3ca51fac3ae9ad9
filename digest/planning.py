"""Who is due, and what each due subscriber gets: ONE answer for the run, the dry run, ``preview`` and the
web preview.

A subscriber's digest holds the papers of their window (``lookback_days``; a week for a weekly digest) with
at least ``source.min_upvotes``, that their rules match, that were never delivered to them nor promised by an
unfinished outbox row, most upvoted first. The rules are matched here, once: each planned row carries its
matches (with their explanations) to ``compose``, which only renders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from digest import likes
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import RuleError
from digest.heap import fewer_collections
from digest.models import Cadence, MatchedPaper, Paper, Subscriber
from digest.refresh import Refreshed, refresh
from digest.rules import BatchMatcher
from digest.sendtimes import Schedule, is_due_on
from digest.store.db import Engine
from digest.store.papers import delivered_ids, load_papers
from digest.store.planning import (
    PlannedDelivery,
    active_with_rules,
    in_flight_papers,
    mark_planned,
    run_row_date,
    unplanned_page,
    write_chunk,
)
from digest.store.subscribers import active_subscribers

log = logging.getLogger("digest.planning")

#: Weekly subscribers see the papers of the last seven days.
WEEKLY_WINDOW_DAYS = 6


def window(config: Config, run_date: date, cadence: Cadence = Cadence.DAILY) -> tuple[date, date]:
    """The first and last day whose papers a digest of ``cadence`` on ``run_date`` may carry."""
    days = config.source.lookback_days
    if cadence == Cadence.WEEKLY:
        days = max(days, WEEKLY_WINDOW_DAYS)
    return run_date - timedelta(days=days), run_date


def is_due(sub: Subscriber, run_date: date) -> bool:
    """Daily subscribers are due every day, weekly ones on their weekday."""
    return is_due_on(sub.cadence, sub.weekday, run_date)


def due_subscribers(engine: Engine, run_date: date) -> list[Subscriber]:
    """The active subscribers whose digest falls on ``run_date``."""
    return [s for s in active_subscribers(engine) if is_due(s, run_date)]


#: Subscribers read, planned and written per chunk: the plan's memory is one chunk's, whatever the list.
PLAN_CHUNK = 5_000


@dataclass(frozen=True)
class Unplanned:
    """Who still has to be planned for a date: how many, and whether a weekly digest is among them."""

    count: int = 0
    weekly: bool = False

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def cadence(self) -> Cadence:
        """The widest window they need."""
        return Cadence.WEEKLY if self.weekly else Cadence.DAILY


def unplanned_chunks(
    engine: Engine, run_date: date, audience: Collection[int] | None = None, size: int | None = None
) -> Iterator[list[Schedule]]:
    """The subscribers due on ``run_date`` (only those in ``audience``, when given) who have no digest for
    that local date yet, in id-ordered chunks of at most ``size`` (``PLAN_CHUNK``). Each chunk is read when
    the previous one has been consumed: a plan that writes a chunk's rows before asking for the next one
    never holds more than a chunk."""
    after = 0
    while True:
        page = unplanned_page(engine, run_date, after, size or PLAN_CHUNK)
        if not page:
            return
        after = page[-1].id
        due = [
            s
            for s in page
            if is_due_on(s.cadence, s.weekday, run_date) and (audience is None or s.id in audience)
        ]
        if due:
            yield due


def unplanned(engine: Engine, run_date: date, audience: Collection[int] | None = None) -> Unplanned:
    """What a run or a send-time slot still has to plan on ``run_date`` (see ``unplanned_chunks``), counted
    page by page: a 1M list is read at every slot, and only one page of it is ever held."""
    count, weekly = 0, False
    for chunk in unplanned_chunks(engine, run_date, audience, size=4 * PLAN_CHUNK):
        count += len(chunk)
        weekly = weekly or any(s.cadence == Cadence.WEEKLY for s in chunk)
    return Unplanned(count, weekly)


def fetch_cadence(subscribers: Sequence[Subscriber]) -> Cadence:
    """The widest window these subscribers need: weekly when a weekly digest is among them."""
    return Cadence.WEEKLY if any(s.cadence == Cadence.WEEKLY for s in subscribers) else Cadence.DAILY


async def fetch_and_store(
    config: Config,
    engine: Engine,
    run_date: date,
    *,
    now: datetime | None = None,
    cadence: Cadence = Cadence.DAILY,
) -> list[Paper]:
    """Fetch the days of the ``cadence`` window of ``run_date`` (and every day since the last good fetch)
    and upsert them; the papers fetched.

    SourceError stops it: nothing is stored from a source that answered something we cannot trust.
    """
    return (await refresh_window(config, engine, run_date, now=now, cadence=cadence)).papers


async def refresh_window(
    config: Config,
    engine: Engine,
    run_date: date,
    *,
    now: datetime | None = None,
    cadence: Cadence = Cadence.DAILY,
) -> Refreshed:
    """The refresh a run on ``run_date`` does: its ``cadence`` window, plus the catch-up since the last
    good fetch; the result names the suspicious empty days (``digest.refresh``) for the caller to alert."""
    start, end = window(config, run_date, cadence)
    refreshed = await refresh(config, engine, end, now=now or utc_now(), start=start)
    await asyncio.to_thread(likes.embed_new, config, engine)  # the model is CPU-bound: off the event loop
    return refreshed


def stored_papers(
    config: Config, engine: Engine, run_date: date, cadence: Cadence = Cadence.DAILY
) -> list[Paper]:
    """The stored papers a digest of ``cadence`` on ``run_date`` may carry (``min_upvotes`` applied)."""
    start, end = window(config, run_date, cadence)
    return load_papers(engine, start, end, min_upvotes=config.source.min_upvotes)


def preview_papers(config: Config, engine: Engine, today: date, days: int) -> list[Paper]:
    """The papers of the last ``days`` days that a digest could carry (``min_upvotes`` applied): the web
    preview matches a visitor's rules against these."""
    return load_papers(engine, today - timedelta(days=days - 1), today, min_upvotes=config.source.min_upvotes)


@dataclass(frozen=True)
class Planned:
    """One due subscriber's digest: the papers it carries, in mail order, each with why it matched."""

    subscriber: Subscriber
    matches: Sequence[MatchedPaper]

    @property
    def paper_ids(self) -> list[str]:
        return [m.paper.id for m in self.matches]

    def row(self) -> PlannedDelivery:
        """The outbox row of this digest."""
        return PlannedDelivery(self.subscriber.id, self.paper_ids)


@dataclass
class Planner:
    """Plans a day's digests. One matcher per window, so each distinct rule is evaluated once per run.

    ``explain=False`` (the real run, which only writes paper ids to the outbox) leaves the explanations to
    the delivery, which computes them from the same matcher's memo for the papers it shows.
    """

    config: Config
    engine: Engine
    run_date: date
    explain: bool = True
    _matchers: dict[Cadence, BatchMatcher] = field(default_factory=dict, repr=False)

    def matcher(self, cadence: Cadence) -> BatchMatcher:
        """The matcher over the papers of the ``cadence`` window (built once)."""
        found = self._matchers.get(cadence)
        if found is None:
            papers = stored_papers(self.config, self.engine, self.run_date, cadence)
            scores = likes.scores_for(self.config, self.engine, papers)
            found = self._matchers[cadence] = BatchMatcher(papers, likes=scores)
        return found

    def plan(self, subscribers: Sequence[Subscriber]) -> list[Planned]:
        """Per subscriber: the matching papers of their window never delivered nor promised to them."""
        out: list[Planned] = []
        for cadence in (Cadence.DAILY, Cadence.WEEKLY):
            group = [s for s in subscribers if s.cadence == cadence]
            if not group:
                continue
            matcher = self.matcher(cadence)
            ids = [s.id for s in group]
            paper_ids = [p.id for p in matcher.papers]
            seen = delivered_ids(self.engine, ids, paper_ids) if paper_ids else {}
            promised = in_flight_papers(self.engine, ids)
            for sub in group:
                already = seen.get(sub.id, set()) | promised.get(sub.id, set())
                out.append(Planned(sub, self.matches(matcher, sub, already, explain=self.explain)))
        return out

    @staticmethod
    def matches(
        matcher: BatchMatcher, sub: Subscriber, exclude: set[str], *, explain: bool = True
    ) -> Sequence[MatchedPaper]:
        """The subscriber's matches in ``matcher``, minus ``exclude``, most upvoted first (ties: id);
        without ``explain`` the matches carry no explanation (cheaper: ids are all the outbox keeps, and the
        ranking is shared by every subscriber with the same rules)."""
        try:
            found = matcher.select(sub.rules) if explain else matcher.ranked(sub.rules)
        except RuleError as exc:  # a stored rule this version cannot read: skip the one subscriber
            log.error("subscriber %d has a rule that cannot be parsed, skipped: %s", sub.id, exc.problem)
            return []
        if not exclude:
            return found
        return [m for m in found if m.paper.id not in exclude]


def plan_outbox(
    config: Config,
    engine: Engine,
    run_id: int,
    clock: Clock,
    audience: Collection[int] | None = None,
    *,
    chunk_size: int | None = None,
) -> int:
    """Plan the run's date into the outbox, chunk by chunk, and mark the run planned; the number of digests
    with papers. The caller holds the planning lock.

    Each chunk of unplanned subscribers is read, planned and written (one transaction) before the next is
    read. A run that dies between two chunks leaves its run unmarked: the rerun takes it over and plans
    only who has no row for the date yet (``UNIQUE(subscriber_id, local_date)``), so nobody is lost and
    nobody is planned twice. Chunks do not change the plan: each subscriber's digest depends only on their
    own rules, deliveries and unfinished rows.
    """
    run_date = run_row_date(engine, run_id)
    planner = Planner(config, engine, run_date, explain=False)
    filled = 0
    with fewer_collections():
        for due in unplanned_chunks(engine, run_date, audience, chunk_size):
            rows = [p.row() for p in planner.plan(active_with_rules(engine, [s.id for s in due]))]
            write_chunk(engine, run_id, rows, clock(), skip_empty=config.schedule.skip_empty)
            filled += sum(1 for r in rows if r.paper_ids)
    mark_planned(engine, run_id, clock())
    return filled


def plan_day(config: Config, engine: Engine, run_date: date, *, explain: bool = True) -> list[Planned]:
    """Every digest due on ``run_date``: the run writes it to the outbox, the dry run renders it."""
    return Planner(config, engine, run_date, explain).plan(due_subscribers(engine, run_date))


def plan_run(config: Config, engine: Engine, run_date: date) -> list[PlannedDelivery]:
    """The outbox rows of ``plan_day`` (what the real run writes)."""
    return [p.row() for p in plan_day(config, engine, run_date, explain=False)]


def plan_subscriber(config: Config, engine: Engine, sub: Subscriber, run_date: date) -> Planned:
    """What ``sub`` would get on ``run_date`` (``digest preview``), whether or not the day is theirs."""
    return Planner(config, engine, run_date).plan([sub])[0]
