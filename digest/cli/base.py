"""The Typer app, the consoles and what every command shares (the config path, loading, --date)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from digest import config as config_mod
from digest import config_load
from digest.errors import DigestError

app = typer.Typer(
    help="paper digest: a daily email of the new Hugging Face Daily Papers that match each subscriber's rules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True, markup=False)  # paper titles and rules are user text
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class _State:
    config_path: Path | None = None
    verbose: bool = False


state = _State()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $DIGEST_CONFIG, then ./config.toml)."),
]
DateOption = Annotated[
    str | None,
    typer.Option("--date", "-d", help="The day, YYYY-MM-DD (default: today in the configured time zone)."),
]


@app.callback()
def _main(
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs and tracebacks.")] = False,
) -> None:
    state.config_path = config
    state.verbose = verbose
    from digest.logs import setup_logging

    setup_logging(verbose=verbose)


def config_path() -> Path:
    """The config file: --config, else $DIGEST_CONFIG, else ./config.toml."""
    return state.config_path or config_load.default_config_path()


def load() -> config_mod.Config:
    """The validated config (ConfigError: one line naming the file, key and fix)."""
    return config_load.load_config(config_path())


def parse_date(value: str | None, cfg: config_mod.Config | None) -> date:
    """The --date value, or today in the configured zone."""
    if value is None:
        zone = cfg.schedule.zone if cfg else None
        return datetime.now(zone).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DigestError(f"--date: expected YYYY-MM-DD, got {value!r}") from None
