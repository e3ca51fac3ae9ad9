"""The schema of one Daily Papers item (API JSON and HTML data-props alike) and its normalisation to Paper.

Two generations are accepted: the 2024 one (``mediaUrl``, no ``submittedOnDailyAt``, no AI fields) and the
current one (``thumbnail``, ``submittedOnDailyAt``, ``ai_summary``/``ai_keywords``, ``organization``...).
Unknown keys are ignored (the site adds fields all the time); the keys we rely on are checked.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from digest.cleaning import clean_value
from digest.errors import SourceError
from digest.models import Paper

log = logging.getLogger("digest.sources")

# New-style arXiv ids (2407.21783, optional version) and old-style ones (hep-th/9901001).
ARXIV_ID = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?\Z")
_WS = re.compile(r"\s+")


def collapse(text: str | None) -> str | None:
    """Collapse runs of white space (arXiv hard-wraps titles and abstracts) and trim."""
    if text is None:
        return None
    return _WS.sub(" ", text).strip()


def http_url(value: str | None) -> str | None:
    """The URL when it is absolute http(s) without spaces or control characters, else None."""
    if not value:
        return None
    v = value.strip()
    if not (v.startswith("https://") or v.startswith("http://")) or len(v) <= len("https://"):
        return None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in v):
        return None
    return v


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _clean(cls, v: object) -> object:
        # The edge: every scraped string loses NUL, controls and bidi overrides before anything reads it.
        return clean_value(v)


class Author(_Lenient):
    name: str


class Organization(_Lenient):
    name: str | None = None  # the HF handle, e.g. "google"
    fullname: str | None = None  # the display name, e.g. "Google"


class PaperPart(_Lenient):
    id: str
    title: str | None = None
    summary: str | None = None
    authors: list[Author] = []
    publishedAt: datetime | None = None
    submittedOnDailyAt: datetime | None = None
    upvotes: Annotated[int, Field(ge=0)] = 0
    ai_summary: str | None = None
    ai_keywords: list[str] | None = None
    githubRepo: str | None = None
    githubStars: Annotated[int, Field(ge=0)] | None = None
    projectPage: str | None = None
    organization: Organization | None = None

    @field_validator("id")
    @classmethod
    def _arxiv_id(cls, v: str) -> str:
        v = v.strip()
        if not ARXIV_ID.match(v):
            raise ValueError(f"not an arXiv id: {v[:40]!r}")
        return v


class Item(_Lenient):
    paper: PaperPart
    title: str | None = None
    summary: str | None = None
    publishedAt: datetime | None = None
    numComments: Annotated[int, Field(ge=0)] = 0
    thumbnail: str | None = None
    mediaUrl: str | None = None  # the 2024 schema's thumbnail
    organization: Organization | None = None

    def to_paper(self, day: date | None) -> Paper:
        """The normalised Paper; ``day`` is the listing's day, used when the item does not say."""
        p = self.paper
        title = collapse(p.title) or collapse(self.title)
        if not title:
            raise ValueError("no title")
        summary = collapse(p.summary) or collapse(self.summary)
        if not summary:
            raise ValueError("no summary")
        if p.submittedOnDailyAt is not None:
            daily = p.submittedOnDailyAt.astimezone(UTC).date()
        elif day is not None:
            daily = day
        elif self.publishedAt is not None:
            # The 2024 schema's top-level publishedAt is when the paper was put on the daily list.
            daily = self.publishedAt.date()
        else:
            raise ValueError("no submittedOnDailyAt and no listing day")
        org = self.organization or p.organization
        org_name = collapse(org.fullname) or collapse(org.name) if org else None
        org_handle = collapse(org.name) if org else None
        authors = tuple(n for a in p.authors if (n := collapse(a.name)))
        keywords = tuple(k for kw in (p.ai_keywords or []) if (k := collapse(kw)))
        return Paper(
            id=p.id,
            title=title,
            summary=summary,
            daily_date=daily,
            authors=authors,
            upvotes=p.upvotes,
            num_comments=self.numComments,
            published_at=p.publishedAt.astimezone(UTC) if p.publishedAt else None,
            ai_summary=collapse(p.ai_summary) or None,
            ai_keywords=keywords,
            github_repo=http_url(p.githubRepo),
            github_stars=p.githubStars,
            project_page=http_url(p.projectPage),
            thumbnail_url=http_url(self.thumbnail) or http_url(self.mediaUrl),
            organization=org_name or None,
            organization_handle=org_handle or None,
        )


def parse_items(data: object, *, url: str, day: date | None) -> tuple[list[Paper], int]:
    """Validate and normalise a list of items; return (papers, number skipped).

    Not a list, or most items failing the schema, means the site changed: ``SourceError``. A few bad items
    among good ones are skipped (and logged) so one odd paper does not cost a day's digest.
    Duplicate ids within the list keep their first occurrence.
    """
    if not isinstance(data, list):
        raise SourceError(url, f"expected a JSON array of papers, got {_kind(data)}")
    papers: list[Paper] = []
    seen: set[str] = set()
    problems: list[str] = []
    for index, raw in enumerate(data):
        try:
            paper = Item.model_validate(raw).to_paper(day)
        except ValidationError as exc:
            problems.append(f"item {index}: {_first_error(exc)}")
            continue
        except ValueError as exc:
            problems.append(f"item {index}: {exc}")
            continue
        if paper.id not in seen:
            seen.add(paper.id)
            papers.append(paper)
    if problems and len(problems) * 2 > len(data):
        raise SourceError(
            url,
            f"{len(problems)} of {len(data)} items fail the schema (the site changed?); first: {problems[0]}",
        )
    for problem in problems:
        log.warning("%s: skipped %s", url, problem)
    return papers, len(problems)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(item)"
    return f"{loc}: {err['msg']}"


def _kind(data: object) -> str:
    if isinstance(data, dict):
        keys = ", ".join(list(map(str, data))[:5])
        return f"an object with keys [{keys}]"
    return type(data).__name__ if data is not None else "null"
