"""The rules box: every line checked with a caret under the problem, and a preview of what the rules
matched over the last days (one shared matcher, rebuilt at most once a minute)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from digest.config import Config
from digest.errors import RuleError
from digest.models import Rule
from digest.notices import rule_lines
from digest.paperblocks import one_line
from digest.planning import preview_papers
from digest.rules import BatchMatcher, explain, validate_rules
from digest.store.db import Engine
from digest.store.subscriber_rows import MAX_RULES

PREVIEW_DAYS = 7
PREVIEW_SHOWN = 20
PREVIEW_CACHE_S = 60.0
MAX_RULES_TEXT = 12_000
MAX_RULE_LINES = MAX_RULES
#: Problems shown for one rules box; the rest are counted ("and N more"): a box of bad rules must not
#: turn into a page hundreds of times its size.
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One bad line of the rules box, shown inline with a caret (for the eye) and said in words.

    ``line`` and ``column`` (1-based, 0 when not about a place) count as the box does: blank lines and
    leading spaces included, so "line 3, character 7" is where a screen reader's caret finds it.
    """

    line: int
    problem: str
    rule: str
    caret: str
    column: int = 0


@dataclass(frozen=True, slots=True)
class PreviewItem:
    title: str
    url: str
    upvotes: int
    day: str
    why: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What the rules in the box matched over the last days (or why they cannot be used)."""

    asked: bool
    problems: list[RuleProblem]
    items: list[PreviewItem]
    total: int
    days: int
    papers_seen: int

    @classmethod
    def empty(cls, problems: list[RuleProblem] | None = None) -> Preview:
        """No preview (nothing asked), or only the problems of the rules box."""
        return cls(bool(problems), problems or [], [], 0, PREVIEW_DAYS, 0)


def check_rules(text: str) -> tuple[list[str], list[RuleProblem]]:
    """The rule lines of ``text`` and a problem per bad line (every line is checked, not only the first)."""
    if len(text) > MAX_RULES_TEXT:
        return [], [RuleProblem(0, f"too much text: at most {MAX_RULES_TEXT} characters", "", "")]
    lines = list(rule_lines(text))
    problems: list[RuleProblem] = []
    if len(lines) > MAX_RULE_LINES:
        problems.append(RuleProblem(0, f"at most {MAX_RULE_LINES} rules; combine some with OR", "", ""))
    # The box's own line numbers and indents: rule_lines drops blank lines and strips each line.
    raw = [(number, row) for number, row in enumerate(text.splitlines(), 1) if row.strip()]
    for (number, row), line in zip(raw, lines, strict=False):
        try:
            validate_rules([line])
        except RuleError as exc:
            shown = exc.rule.replace("\t", " ")
            column = len(row) - len(row.lstrip()) + exc.position + 1
            problems.append(RuleProblem(number, exc.problem, shown, " " * exc.position + "^", column))
    if len(problems) > MAX_PROBLEMS_SHOWN:
        more = len(problems) - MAX_PROBLEMS_SHOWN
        problems = problems[:MAX_PROBLEMS_SHOWN]
        problems.append(RuleProblem(0, f"and {more} more lines with problems", "", ""))
    return lines, problems


class RulePreview:
    """The preview of a rules box over the papers of the last PREVIEW_DAYS days."""

    def __init__(self, config: Config, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self._matcher: tuple[float, date, BatchMatcher] | None = None
        self._papers_lock = threading.Lock()
        self._match_lock = threading.Lock()

    def recent_matcher(self) -> tuple[BatchMatcher, int]:
        """A matcher over the papers of the last PREVIEW_DAYS days, rebuilt at most once a minute.

        Indexing the week's papers costs far more than matching a rule, so every preview shares it.
        """
        today = self.clock().astimezone(self.config.schedule.zone).date()
        with self._papers_lock:
            cached = self._matcher
            if cached and cached[1] == today and time.monotonic() - cached[0] < PREVIEW_CACHE_S:
                return cached[2], len(cached[2].papers)
            papers = preview_papers(self.config, self.engine, today, PREVIEW_DAYS)
            matcher = BatchMatcher(papers, cache_size=4096)
            self._matcher = (time.monotonic(), today, matcher)
            return matcher, len(papers)

    def __call__(self, text: str) -> Preview:
        """The preview of the rules box ``text``."""
        lines, problems = check_rules(text)
        if problems or not lines:
            return Preview(bool(lines) or bool(problems), problems, [], 0, PREVIEW_DAYS, 0)
        matcher, seen = self.recent_matcher()
        rules = [Rule(query=q) for q in lines]
        with self._match_lock:  # the matcher's memo tables are not meant for concurrent writers
            hits = [matcher.papers[i] for i in matcher.match(rules)]
        # Explaining costs more than matching: explain only the papers shown.
        top = sorted(hits, key=lambda p: (-p.upvotes, p.id))[:PREVIEW_SHOWN]
        items = []
        for paper in top:
            why = [e for e in (explain(paper, r) for r in rules) if e is not None]
            items.append(
                PreviewItem(
                    title=one_line(paper.title),  # the digest's filter, for papers stored before cleaning
                    url=paper.url,
                    upvotes=paper.upvotes,
                    day=paper.daily_date.strftime("%a %-d %b"),
                    why=one_line("; ".join(e.describe() for e in why)),
                )
            )
        return Preview(True, [], items, len(hits), PREVIEW_DAYS, seen)
