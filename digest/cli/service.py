"""`digest serve` and `digest demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest.cli.base import app, err, load, out


@app.command()
def serve() -> None:
    """Run the scheduler and the web app in one process (the production entry point)."""
    from digest.server import serve_forever

    cfg = load()
    raise typer.Exit(serve_forever(cfg))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the received mails are written.")] = Path(
        "demo-out"
    ),
) -> None:
    """The whole pipeline offline: a bundled real HF snapshot, an embedded SMTP server, SQLite, three subscribers."""
    from digest.demo.run import run_demo

    result = run_demo(out_dir, console=err)
    table = Table(title=f"demo: {result.papers_fetched} papers fetched for {result.run_date}")
    table.add_column("subscriber")
    table.add_column("rules")
    table.add_column("papers", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("file")
    for row in result.rows:
        table.add_row(row.email, "\n".join(row.rules), str(row.papers), str(row.size), str(row.path or "-"))
    out.print(table)
    if result.bounce is not None:
        b = result.bounce
        out.print(f"bounce: a DSN for {b.recipient} ({b.reason}) came back over LMTP to {b.envelope_sender}")
        out.print(f"        {b.kind} -> {b.action}")
