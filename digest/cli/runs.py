"""`digest preview` and `digest run`, with the progress display and the run report."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from digest.cleaning import visible
from digest.cli.base import DateOption, app, err, load, out, parse_date


@app.command()
def preview(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    day: DateOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path("preview"),
) -> None:
    """Render a subscriber's digest to DIR/*.html, *.txt and *.eml without sending (uses stored papers)."""
    from digest.pipeline import open_store, preview_digest

    cfg = load()
    when = parse_date(day, cfg)
    files = preview_digest(cfg, open_store(cfg), email, when, out_dir)
    if not files:
        out.print(f"{visible(email)}: no new matching papers for {when}")
        return
    for f in files:
        out.print(f"wrote {visible(f)}")


@app.command()
def run(
    day: DateOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write the mails as .eml files instead of sending; record nothing."),
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where --dry-run writes the mails.")] = Path(
        "dry-run"
    ),
) -> None:
    """One full digest run now: fetch, match, render, deliver. Exit 0 when every delivery reached a final state."""
    from digest.pipeline import run_from_cli

    cfg = load()
    when = parse_date(day, cfg)
    with _progress(err) as progress:
        report = run_from_cli(cfg, when, dry_run=dry_run, out_dir=out_dir, progress=progress)
    if report.status == "locked":
        # Not an error: the other process owns this date and will finish it (and report it).
        out.print(visible(report.error))
        return
    _print_report(report)
    if report.status != "done":
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(console: Console) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal, a log line every 5 s otherwise (the run calls it with done, total)."""
    if not console.is_terminal:
        last = [0.0]

        def log_progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 5 or done == total:
                last[0] = time.monotonic()
                logging.getLogger("digest.pipeline").info("delivered %d/%d", done, total)

        yield log_progress
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("send", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _print_report(report: Any) -> None:
    table = Table(title=f"run {report.run_date} — {report.status}", show_header=False)
    for key in (
        "papers_fetched",
        "subscribers",
        "sent",
        "retried",
        "failed",
        "uncertain",
        "skipped_empty",
        "bounced",
    ):
        table.add_row(key.replace("_", " "), str(getattr(report, key)))
    table.add_row("time", f"{report.seconds:.2f} s")
    table.add_row("messages/s", f"{report.messages_per_s:.1f}")
    out.print(table)
    for problem in report.problems:
        err.print(f"warning: {visible(problem)}")
    if report.error:
        err.print(f"error: {visible(report.error)}")
