"""What a delivery keeps between its batches, and a worker between the chunk jobs of one run.

The papers the outbox rows carry, one matcher over them (each rule evaluated once), each distinct rule set's
matches, and the composer (its DKIM key is read once). The matcher's papers are also the identity the
rendering cache keys on (digest.render): a worker that built all of this again for every chunk of 500 rows
rendered every distinct digest again, and read the papers and the like: scores again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from digest import likes
from digest.compose import Composer
from digest.config import Config
from digest.models import MatchedPaper, Paper, Rule
from digest.rules import BatchMatcher
from digest.store.db import Engine
from digest.store.lookups import papers_by_ids

__all__ = ["SELECT_CACHE_SIZE", "DeliveryKit", "PaperSelection"]

#: Distinct rule sets whose matches a selection keeps (per matcher; cleared when full).
SELECT_CACHE_SIZE = 4096


class PaperSelection:
    """The papers of the rows seen so far, the matcher over them, and each rule set's matches."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.papers: dict[str, Paper] = {}
        self._matcher: BatchMatcher | None = None
        self._matcher_key: frozenset[str] = frozenset()
        self._selected: dict[tuple[Rule, ...], list[MatchedPaper]] = {}
        self._selected_for: BatchMatcher | None = None

    def matcher_for(self, paper_ids: Iterable[str]) -> BatchMatcher:
        """One matcher over the papers seen so far and ``paper_ids``: rules and explanations computed once."""
        missing = {pid for pid in paper_ids if pid not in self.papers}
        if missing:
            self.papers.update({p.id: p for p in papers_by_ids(self.engine, sorted(missing))})
        key = frozenset(self.papers)
        if self._matcher is None or key != self._matcher_key:
            papers = sorted(self.papers.values(), key=lambda p: p.id)
            # The plan matched like: rules too: without their index a like-only paper would vanish here.
            scores = likes.scores_for(self.config, self.engine, papers)
            self._matcher, self._matcher_key = BatchMatcher(papers, likes=scores), key
        return self._matcher

    def select(self, matcher: BatchMatcher, rules: tuple[Rule, ...]) -> Sequence[MatchedPaper]:
        """matcher.select(rules), kept per distinct rule set while the matcher stays the same."""
        if self._selected_for is not matcher or len(self._selected) >= SELECT_CACHE_SIZE:
            self._selected, self._selected_for = {}, matcher
        found = self._selected.get(rules)
        if found is None:
            found = self._selected[rules] = matcher.select(rules)
        return found


@dataclass
class DeliveryKit:
    """A composer and the selection of one run, for the deliveries that send that run's rows."""

    config: Config
    engine: Engine
    composer: Composer
    run: tuple[tuple[int, ...], date] | None = None
    _selection: PaperSelection | None = field(default=None, repr=False)

    @classmethod
    def for_config(cls, config: Config, engine: Engine) -> DeliveryKit:
        """A kit with this config's composer (its DKIM key read now)."""
        return cls(config, engine, Composer.for_config(config))

    def selection(self, run_ids: Sequence[int], run_date: date) -> PaperSelection:
        """The selection of these runs: kept while the same runs are sent (a new run starts a fresh one, with
        the papers as they are stored then)."""
        run = (tuple(sorted(run_ids)), run_date)
        if self._selection is None or run != self.run:
            self._selection, self.run = PaperSelection(self.config, self.engine), run
        return self._selection
