"""The `digest` command line (Typer + rich). Thin: parse, call the services, print.

One module per group of commands; importing them registers the commands on ``app`` in help order.
"""

from digest.cli import bulk, papers, people, runs, service, setup_commands  # noqa: F401  (registers commands)
from digest.cli.base import app
from digest.cli.main import main

__all__ = ["app", "main"]
