"""`digest init` and `digest check-config`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from digest.cli.base import app, config_path, load, out


@app.command()
def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Write config.toml from the example (with a fresh secret key in data/secret_key) and create the database."""
    from digest.setup import init_workspace

    path = config_path()
    result = init_workspace(path, force=force)
    out.print(f"wrote {result.config_path}" if result.wrote_config else f"kept existing {result.config_path}")
    out.print(
        f"secret key in {result.secret_path} (mode 0600)"
        if result.wrote_secret
        else "kept existing secret key"
    )
    out.print(f"database ready: {result.database}")
    out.print("next: edit [smtp] and [web] in the config, then 'digest check-config' and 'digest serve'")


@app.command("check-config")
def check_config() -> None:
    """Validate the config and print a summary with secrets masked; exit 1 with 'file: key: problem' on error."""
    from digest.setup import config_summary

    cfg = load()
    table = Table(title=f"{cfg.path}", show_header=False)
    for key, value in config_summary(cfg):
        table.add_row(key, value)
    out.print(table)
    out.print("config OK")
