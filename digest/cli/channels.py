"""`digest channels test NAME`: post a sample to a team-chat channel."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from digest.cleaning import visible
from digest.cli.base import app, load, out
from digest.errors import DigestError

channels_app = typer.Typer(help="Team-chat channels ([[channels]] in the config).", no_args_is_help=True)
app.add_typer(channels_app, name="channels")


@channels_app.command("test")
def channels_test(name: Annotated[str, typer.Argument(help="The channel's name in [[channels]].")]) -> None:
    """Post a sample paper to the channel now (records nothing); exit 1 when the webhook does not take it."""
    from digest.channels.post import post_sample

    answer = asyncio.run(post_sample(load(), name))
    if answer.verdict != "posted":
        raise DigestError(f"channel {name}: the webhook did not take the sample: {answer.reply}")
    # The reply is the webhook server's text: shown with its control characters as escapes.
    out.print(f"channel {visible(name)}: sample posted ({visible(answer.reply)})")
