"""`digest fetch` and `digest match`: the source and the rules, from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from digest.cleaning import visible, visible_json
from digest.cli.base import DateOption, app, load, out, parse_date
from digest.errors import DigestError


@app.command()
def fetch(
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the papers as a JSON array.")] = False,
) -> None:
    """Fetch and store the papers of a day (plus the look-back days)."""
    from digest.pipeline import fetch_and_store, open_store

    cfg = load()
    when = parse_date(day, cfg)
    engine = open_store(cfg)
    papers = asyncio.run(fetch_and_store(cfg, engine, when))
    if as_json:
        sys.stdout.write(visible_json([p.to_json() for p in papers], indent=2) + "\n")
        return
    table = Table("day", "id", "upvotes", "title")
    for p in sorted(papers, key=lambda p: (p.daily_date, -p.upvotes), reverse=True):
        table.add_row(p.daily_date.isoformat(), p.id, str(p.upvotes), Text(visible(p.title)))  # scraped
    out.print(table)
    out.print(f"{len(papers)} papers stored")


@app.command()
def match(
    query: Annotated[
        str, typer.Argument(help="A rule, e.g. 'diffusion -video' or 'title:\"flow matching\"'.")
    ],
    day: DateOption = None,
    papers_file: Annotated[
        Path | None, typer.Option("--papers", help="An HF API JSON array to match instead of stored papers.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print [{"id": ..., "why": [...]}].')] = False,
) -> None:
    """Evaluate one rule against stored papers (or a JSON file) and show what matched and why.

    A like:<arXiv id> rule shows each paper's similarity to the liked one (semantic extra).
    """
    from digest.models import Rule
    from digest.rules import BatchMatcher, validate_rules

    validate_rules([query])  # a bad rule (or like: without the extra) fails before anything is loaded
    if papers_file is not None:
        from digest.sources import papers_from_api_json

        try:
            data = json.loads(papers_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DigestError(f"{papers_file}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise DigestError(f"{papers_file}: not JSON ({exc})") from None
        papers = papers_from_api_json(data, url=str(papers_file))
    else:
        from digest.pipeline import open_store, stored_papers

        cfg = load()
        when = parse_date(day, cfg)
        papers = stored_papers(cfg, open_store(cfg), when)
    scores = _like_scores(query, papers, stored=papers_file is None)
    matched = BatchMatcher(papers, likes=scores).select([Rule(query=query)])
    if as_json:
        result = [{"id": m.paper.id, "why": [w.describe() for w in m.why]} for m in matched]
        sys.stdout.write(visible_json(result) + "\n")
        return
    for m in matched:
        out.print(Text.assemble((m.paper.id, "bold"), f"  {m.paper.upvotes:>4}▲  ", visible(m.paper.title)))
        for w in m.why:
            out.print(f"    matched: {visible(w.describe())}")
    out.print(f"{len(matched)} of {len(papers)} papers matched")


def _like_scores(query: str, papers: list[Any], *, stored: bool) -> Any:
    """The similarity index a like: rule needs (None for a rule without like:)."""
    from digest import likes
    from digest.pipeline import open_store

    if not likes.liked_ids([query]):
        return None
    cfg = load()
    return likes.index_for_query(cfg, open_store(cfg), papers, query, stored=stored)
