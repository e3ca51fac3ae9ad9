"""`digest subscribe`, `unsubscribe` and `subscribers`: the operator manages the list."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from digest.cleaning import visible, visible_json
from digest.cli.base import app, load, out
from digest.errors import SubscriberError


@app.command()
def subscribe(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    rule: Annotated[list[str], typer.Option("--rule", "-r", help="A keyword rule (repeat for several).")],
    name: Annotated[str | None, typer.Option("--name", help="The subscriber's name.")] = None,
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="Activate now, skipping double opt-in.")
    ] = False,
    send_time: Annotated[
        str | None, typer.Option("--send-time", help="Own send time, HH:MM on a quarter hour (local).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA zone of --send-time (default: [schedule]'s).")
    ] = None,
) -> None:
    """Add a subscriber (admin). Without --confirmed a confirmation mail is sent first.

    Without --send-time the digest comes at the [schedule] cron time.
    """
    from digest.pipeline import open_store
    from digest.sendtimes import parse_send_time, parse_timezone
    from digest.subscriptions import admin_set_send_time, admin_subscribe

    cfg = load()
    if timezone is not None and send_time is None:
        raise SubscriberError("--timezone needs --send-time (without it the [schedule] cron time applies)")
    hhmm = parse_send_time(send_time) if send_time is not None else None  # checked before anything is stored
    zone = parse_timezone(timezone) if timezone is not None else None
    engine = open_store(cfg)
    sub = asyncio.run(admin_subscribe(cfg, engine, email, rule, name=name, confirmed=confirmed))
    if hhmm is not None:
        sub = admin_set_send_time(engine, sub.email, hhmm, zone)
    when = f", at {sub.send_time} {sub.timezone or cfg.schedule.timezone}" if sub.send_time else ""
    out.print(f"{visible(sub.email)}: {sub.status} with {len(sub.rules)} rule(s){visible(when)}")


@app.command()
def unsubscribe(email: Annotated[str, typer.Argument(help="The subscriber's address.")]) -> None:
    """Unsubscribe an address (admin)."""
    from digest.pipeline import open_store
    from digest.subscriptions import admin_unsubscribe

    cfg = load()
    admin_unsubscribe(cfg, open_store(cfg), email)
    out.print(f"{visible(email)}: unsubscribed")


@app.command()
def subscribers(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List subscribers: email, status, rules, cadence, last digest."""
    from digest.pipeline import open_store
    from digest.store.feedback import BounceSummary, bounce_summaries
    from digest.store.subscribers import list_subscribers

    cfg = load()
    engine = open_store(cfg)
    rows = list_subscribers(engine)
    if as_json:
        failures = bounce_summaries(engine)
        none = BounceSummary(0, None, None)
        data: list[dict[str, Any]] = [
            {
                "email": r.email,
                "status": str(r.status),
                "rules": list(r.rules),
                "cadence": str(r.cadence),
                "last_digest_at": r.last_digest_at.isoformat() if r.last_digest_at else None,
                "hard_bounces": failures.get(r.email, none).hard_bounces,
                "last_failure": failures.get(r.email, none).last_failure,
            }
            for r in rows
        ]
        sys.stdout.write(visible_json(data, indent=2) + "\n")
        return
    table = Table("email", "status", "cadence", "rules", "last digest")
    for r in rows:
        table.add_row(
            visible(r.email),
            str(r.status),
            str(r.cadence),
            "\n".join(visible(rule) for rule in r.rules),
            r.last_digest_at.strftime("%Y-%m-%d %H:%M") if r.last_digest_at else "-",
        )
    out.print(table)
    out.print(f"{len(rows)} subscriber(s)")
