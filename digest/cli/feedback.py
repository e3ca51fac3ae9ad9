"""`digest bounces`: the bounces and complaints received and what each did."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from digest.cli.base import app, load, out
from digest.errors import DigestError


@app.command()
def bounces(
    since: Annotated[
        str | None, typer.Option("--since", help="Only what arrived on or after this day, YYYY-MM-DD.")
    ] = None,
) -> None:
    """The bounces and complaints received (LMTP, IMAP, webhook) and what each did to its subscriber."""
    from digest.pipeline import open_store
    from digest.store.feedback import count_by_kind, list_feedback

    cfg = load()
    start = None
    if since is not None:
        try:
            day = date.fromisoformat(since)
        except ValueError:
            raise DigestError(f"--since: expected YYYY-MM-DD, got {since!r}") from None
        start = datetime.combine(day, datetime.min.time(), tzinfo=cfg.schedule.zone)
    engine = open_store(cfg)
    rows = [
        (
            f.received_at.astimezone(cfg.schedule.zone).strftime("%Y-%m-%d %H:%M"),
            f.source,
            f.kind,
            f.email or "-",
            " ".join((f.reason or "-").split()),
            f.action,
        )
        for f in list_feedback(engine, start)
    ]
    table = Table("received", "via", "kind")
    for name in ("address", "reason", "what it did"):
        table.add_column(name, overflow="fold")  # addresses and replies are shown whole, never cut
    for row in rows:
        if out.is_terminal:
            table.add_row(*(Text(cell) for cell in row))  # text from outside: no markup
        else:  # one tab-separated line per message, for grep and scripts
            sys.stdout.write("\t".join(row) + "\n")
    if out.is_terminal:
        out.print(table)
    counts = count_by_kind(engine, start)
    summary = ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "nothing"
    out.print(f"received: {summary}")
