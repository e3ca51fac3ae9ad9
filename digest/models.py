"""Domain types shared by every layer. Pure data: no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Paper:
    """One Hugging Face Daily Paper, normalised (see DESIGN.md section 3)."""

    id: str
    title: str
    summary: str
    daily_date: date
    authors: tuple[str, ...] = ()
    upvotes: int = 0
    num_comments: int = 0
    published_at: datetime | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    thumbnail_url: str | None = None
    organization: str | None = None  # display name, e.g. "Google"
    organization_handle: str | None = None  # HF handle, e.g. "google"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/papers/{self.id}"

    @property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/abs/{self.id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.id}"

    def to_json(self) -> dict[str, Any]:
        """The paper fields of the contract, JSON-ready."""
        return {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "authors": list(self.authors),
            "upvotes": self.upvotes,
            "num_comments": self.num_comments,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "daily_date": self.daily_date.isoformat(),
            "ai_summary": self.ai_summary,
            "ai_keywords": list(self.ai_keywords),
            "github_repo": self.github_repo,
            "github_stars": self.github_stars,
            "project_page": self.project_page,
            "thumbnail_url": self.thumbnail_url,
            "organization": self.organization,
            "url": self.url,
            "arxiv_url": self.arxiv_url,
            "pdf_url": self.pdf_url,
        }


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class RunStatus(enum.StrEnum):
    """The state of a ``run`` row, and of the RunReport of one run (``locked`` only ever in a report)."""

    RUNNING = "running"
    DONE = "done"
    INCOMPLETE = "incomplete"  # some deliveries wait for a retry
    INTERRUPTED = "interrupted"  # stopped (SIGTERM) or its process died
    FAILED = "failed"
    LOCKED = "locked"  # another live process holds the run: nothing was done


class Cadence(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self in (
            DeliveryState.SENT,
            DeliveryState.FAILED,
            DeliveryState.UNCERTAIN,
            DeliveryState.SKIPPED,
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """A subscriber's named keyword rule (the query text is validated when saved)."""

    query: str
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.query


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    rules: tuple[Rule, ...]
    name: str | None = None
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    cadence: Cadence = Cadence.DAILY
    weekday: int = 0  # 0 = Monday; used when cadence is weekly
    managed_by_config: bool = False
    token_version: int = 0  # part of every mailed link; bumping it revokes them all
    send_time: str | None = None  # "HH:MM" local; None: follows [schedule] cron (digest.sendtimes)
    timezone: str | None = None  # IANA zone of send_time; None: [schedule] timezone


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered digest before it becomes MIME bytes."""

    subject: str
    text: str
    html: str
    preheader: str = ""
    shown: tuple[str, ...] = ()  # the ids of the papers the mail shows (a digest; empty for service mails)


@dataclass(slots=True)
class RunReport:
    """What one run did: counts, failures, timings."""

    run_date: date
    status: RunStatus = RunStatus.RUNNING
    papers_fetched: int = 0
    subscribers: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped_empty: int = 0
    bounced: int = 0
    seconds: float = 0.0
    error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def messages_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_date": self.run_date.isoformat(),
            "status": str(self.status),
            "papers_fetched": self.papers_fetched,
            "subscribers": self.subscribers,
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "uncertain": self.uncertain,
            "skipped_empty": self.skipped_empty,
            "bounced": self.bounced,
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.messages_per_s, 1),
            "error": self.error,
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``text[start:end]`` of a paper field (``title``, ``summary`` or ``ai_summary``) to highlight."""

    field: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one rule matched one paper: the query terms that matched, where, and what to highlight."""

    rule: str  # the rule's label (its name, else its query)
    terms: tuple[str, ...]  # e.g. ("diffusion", "large language model")
    fields: tuple[str, ...]  # e.g. ("title", "abstract"): fields are title, abstract, keyword, author, org
    spans: tuple[Span, ...] = ()

    def describe(self) -> str:
        """'diffusion in title, abstract' — the line shown in the mail."""
        terms = ", ".join(self.terms) or self.rule
        return f"{terms} in {', '.join(self.fields)}" if self.fields else terms


@dataclass(frozen=True, slots=True)
class MatchedPaper:
    """A paper selected for a subscriber, with one explanation per rule that matched it (first rule first)."""

    paper: Paper
    why: tuple[Explanation, ...]
