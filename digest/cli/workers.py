"""`digest worker`: a procrastinate worker for the PostgreSQL scale-out."""

from __future__ import annotations

from typing import Annotated

import typer

from digest.cli.base import app, load
from digest.errors import ConfigError


@app.command()
def worker(
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", "-n", min=1, max=64, help="Delivery jobs run at once by this process."),
    ] = 1,
) -> None:
    """Run plan, refresh and delivery jobs for `serve` (PostgreSQL with [workers] enabled; start as many as
    you like, on any machine that reaches the database). Stops on SIGTERM/SIGINT after its running jobs."""
    from digest.jobs import worker_forever

    cfg = load()
    if not cfg.workers.enabled:
        raise ConfigError(
            [f"{cfg.path}: workers.enabled: set it to true to run 'digest worker' (PostgreSQL only)"]
        )
    raise typer.Exit(worker_forever(cfg, concurrency))
