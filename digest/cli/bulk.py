"""`digest import` and `digest export`: many subscribers at once (CSV or JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import app, load, out


@app.command("import")
def import_subscribers(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header: email, rules (';'-separated), and optionally "
            "name, cadence, weekday, send_time, timezone, status."
        ),
    ],
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="The addresses consented: store them active, not pending.")
    ] = False,
) -> None:
    """Import subscribers from a CSV file. Every row is checked first; a bad row is reported as FILE:LINE
    and nothing is imported. Unsubscribed and bounced addresses are never reactivated."""
    from digest.bulk import import_file
    from digest.pipeline import open_store

    cfg = load()
    result = import_file(open_store(cfg), file, confirmed=confirmed)
    out.print(f"{file}: {result.created} created, {result.updated} updated")
    if result.kept:
        out.print(f"{len(result.kept)} unsubscribed or bounced address(es) left as they are")
    if result.managed:
        out.print(f"{len(result.managed)} address(es) managed in the config file left to it")


@app.command("export")
def export_subscribers(
    fmt: Annotated[str, typer.Option("--format", help="csv (the import's columns) or json.")] = "csv",
) -> None:
    """Write every subscriber to standard output (CSV that `digest import` reads back, or JSON)."""
    from digest.bulk import export_subscribers as export
    from digest.pipeline import open_store

    cfg = load()
    sys.stdout.write(export(open_store(cfg), fmt))
