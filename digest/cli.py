"""The `digest` command line (Typer + rich). Thin: parse, call the services, print.

This module is the errors-to-exit-code boundary: a DigestError prints one clear line and exits 1;
anything else is a bug and keeps its traceback. `-v` shows tracebacks for DigestErrors too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digest import config as config_mod
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


def _config_path() -> Path:
    return state.config_path or config_mod.default_config_path()


def _load() -> config_mod.Config:
    return config_mod.load_config(_config_path())


def _parse_date(value: str | None, cfg: config_mod.Config | None) -> date:
    if value is None:
        zone = cfg.schedule.zone if cfg else None
        return datetime.now(zone).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DigestError(f"--date: expected YYYY-MM-DD, got {value!r}") from None


@app.command()
def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
) -> None:
    """Write config.toml from the example (with a fresh secret key in data/secret_key) and create the database."""
    from digest.setup import init_workspace

    path = _config_path()
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

    cfg = _load()
    table = Table(title=f"{cfg.path}", show_header=False)
    for key, value in config_summary(cfg):
        table.add_row(key, value)
    out.print(table)
    out.print("config OK")


#: The shortest console password ``admin-password`` accepts.
MIN_ADMIN_PASSWORD = 12


@app.command("admin-password")
def admin_password() -> None:
    """Print an argon2 hash of a console password for [admin] password_hash_env.

    The password is typed at a prompt (twice), or read from the first line of stdin when that is not a
    terminal; never from the command line, where other users and the shell history would see it.
    """
    from digest.web.admin.auth import hash_password

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Console password: ")
        if getpass.getpass("Again: ") != password:
            raise DigestError("the two passwords differ; nothing printed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_ADMIN_PASSWORD:
        raise DigestError(f"the password is shorter than {MIN_ADMIN_PASSWORD} characters; nothing printed")
    out.print(hash_password(password))


@app.command()
def fetch(
    day: DateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the papers as a JSON array.")] = False,
) -> None:
    """Fetch and store the papers of a day (plus the look-back days)."""
    from digest.pipeline import fetch_and_store, open_store

    cfg = _load()
    when = _parse_date(day, cfg)
    engine = open_store(cfg)
    papers = asyncio.run(fetch_and_store(cfg, engine, when))
    if as_json:
        sys.stdout.write(json.dumps([p.to_json() for p in papers], ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("day", "id", "upvotes", "title")
    for p in sorted(papers, key=lambda p: (p.daily_date, -p.upvotes), reverse=True):
        table.add_row(p.daily_date.isoformat(), p.id, str(p.upvotes), Text(p.title))  # scraped: no markup
    out.print(table)
    out.print(f"{len(papers)} papers stored")


@app.command()
def match(
    query: Annotated[
        str, typer.Argument(help="A rule, e.g. 'diffusion -video' or 'title:\"flow matching\"'.")
    ],
    day: DateOption = None,
    papers_file: Annotated[
        Path | None, typer.Option("--papers", help="An HF API JSON array to match instead of stored papers.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print [{"id": ..., "why": [...]}].')] = False,
) -> None:
    """Evaluate one rule against stored papers (or a JSON file) and show what matched and why."""
    from digest.models import Rule
    from digest.rules import parse_rule, select_papers

    parse_rule(query)  # a bad rule fails before anything is loaded
    if papers_file is not None:
        from digest.sources import papers_from_api_json

        try:
            data = json.loads(papers_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DigestError(f"{papers_file}: cannot read ({exc.strerror})") from None
        except ValueError as exc:
            raise DigestError(f"{papers_file}: not JSON ({exc})") from None
        papers = papers_from_api_json(data, url=str(papers_file))
    else:
        from digest.pipeline import open_store, stored_papers

        cfg = _load()
        when = _parse_date(day, cfg)
        papers = stored_papers(cfg, open_store(cfg), when)
    matched = select_papers(papers, [Rule(query=query)])
    if as_json:
        result = [{"id": m.paper.id, "why": [w.describe() for w in m.why]} for m in matched]
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    for m in matched:
        out.print(Text.assemble((m.paper.id, "bold"), f"  {m.paper.upvotes:>4}▲  ", m.paper.title))
        for w in m.why:
            out.print(f"    matched: {w.describe()}")
    out.print(f"{len(matched)} of {len(papers)} papers matched")


@app.command()
def subscribe(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    rule: Annotated[list[str], typer.Option("--rule", "-r", help="A keyword rule (repeat for several).")],
    name: Annotated[str | None, typer.Option("--name", help="The subscriber's name.")] = None,
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Activate now, skipping double opt-in.")
    ] = False,
) -> None:
    """Add a subscriber (admin). Without --confirmed a confirmation mail is sent first."""
    from digest.pipeline import admin_subscribe, open_store

    cfg = _load()
    sub = asyncio.run(admin_subscribe(cfg, open_store(cfg), email, rule, name=name, confirmed=confirmed))
    out.print(f"{sub.email}: {sub.status} with {len(sub.rules)} rule(s)")


@app.command()
def unsubscribe(email: Annotated[str, typer.Argument(help="The subscriber's address.")]) -> None:
    """Unsubscribe an address (admin)."""
    from digest.pipeline import admin_unsubscribe, open_store

    cfg = _load()
    admin_unsubscribe(cfg, open_store(cfg), email)
    out.print(f"{email}: unsubscribed")


@app.command()
def subscribers(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List subscribers: email, status, rules, cadence, last digest."""
    from digest.pipeline import open_store
    from digest.store.subscribers import list_subscribers

    cfg = _load()
    rows = list_subscribers(open_store(cfg))
    if as_json:
        data: list[dict[str, Any]] = [
            {
                "email": r.email,
                "status": str(r.status),
                "rules": list(r.rules),
                "cadence": str(r.cadence),
                "last_digest_at": r.last_digest_at.isoformat() if r.last_digest_at else None,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("email", "status", "cadence", "rules", "last digest")
    for r in rows:
        table.add_row(
            r.email,
            str(r.status),
            str(r.cadence),
            "\n".join(r.rules),
            r.last_digest_at.strftime("%Y-%m-%d %H:%M") if r.last_digest_at else "-",
        )
    out.print(table)
    out.print(f"{len(rows)} subscriber(s)")


@app.command()
def preview(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    day: DateOption = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path("preview"),
) -> None:
    """Render a subscriber's digest to DIR/*.html, *.txt and *.eml without sending (uses stored papers)."""
    from digest.pipeline import open_store, preview_digest

    cfg = _load()
    when = _parse_date(day, cfg)
    files = preview_digest(cfg, open_store(cfg), email, when, out_dir)
    if not files:
        out.print(f"{email}: no new matching papers for {when}")
        return
    for f in files:
        out.print(f"wrote {f}")


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

    cfg = _load()
    when = _parse_date(day, cfg)
    report = run_from_cli(cfg, when, dry_run=dry_run, out_dir=out_dir, console=err)
    if report.status == "locked":
        # Not an error: the other process owns this date and will finish it (and report it).
        out.print(report.error)
        return
    _print_report(report)
    if report.status != "done":
        raise typer.Exit(1)


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
        err.print(f"warning: {problem}")
    if report.error:
        err.print(f"error: {report.error}")


@app.command()
def serve() -> None:
    """Run the scheduler and the web app in one process (the production entry point)."""
    from digest.server import serve_forever

    cfg = _load()
    raise typer.Exit(serve_forever(cfg))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the received mails are written.")] = Path(
        "demo-out"
    ),
) -> None:
    """The whole pipeline offline: a bundled real HF snapshot, an embedded SMTP server, SQLite, three subscribers."""
    from digest.demo import run_demo

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


def main() -> None:
    """Console-script entry point: the DigestError -> one line + exit 1 boundary."""
    try:
        code = app(standalone_mode=False)
    except DigestError as exc:
        if state.verbose:
            logging.getLogger("digest").exception("failed")
        lines = str(exc).splitlines() or [type(exc).__name__]
        err.print(f"error: {lines[0]}", markup=False)
        for line in lines[1:]:
            err.print(line, markup=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
