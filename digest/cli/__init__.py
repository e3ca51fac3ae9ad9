"""The `digest` command line (Typer + rich). Thin: parse, call the services, print.

One module per group of commands; importing them registers the commands on ``app`` in help order.
"""

from digest.cli import (  # noqa: F401  (registers commands)
    admin,
    bulk,
    channels,
    feedback,
    papers,
    people,
    runs,
    service,
    setup_commands,
    workers,
)
from digest.cli.base import app
from digest.cli.main import main

__all__ = ["app", "main"]
