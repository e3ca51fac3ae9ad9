"""Admin subscription services: subscribe and unsubscribe from the command line, and the config's
``[[subscribers]]`` (checked, then synced into the database on start)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from digest import likes
from digest.addresses import normalize_email
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import ConfigError, DeliveryError, RuleError, SubscriberError
from digest.mailer import SendOutcome, SmtpPool, SmtpSettings
from digest.models import RenderedEmail, Subscriber, SubscriberStatus
from digest.notices import render_confirmation, unsubscribe_url
from digest.outgoing import ServiceMail
from digest.rules import validate_rules
from digest.sendtimes import parse_send_time, parse_timezone
from digest.store.config_sync import sync_config_subscribers
from digest.store.db import Engine
from digest.store.send_slots import set_send_time
from digest.store.signup import record_confirmation_sent, release_confirmation_claim
from digest.store.subscribers import add_subscriber, find_subscriber, set_rules, set_status


async def admin_subscribe(
    config: Config,
    engine: Engine,
    email: str,
    rules: Sequence[str],
    *,
    name: str | None = None,
    confirmed: bool = False,
) -> Subscriber:
    """Add a subscriber from the command line; without ``confirmed`` a confirmation mail is sent.

    An address already pending gets its rules replaced (and the mail again, at most once an hour); an active or
    paused one gets its rules replaced; ``confirmed`` also activates a pending or bounced address. An address
    that unsubscribed is refused: only its owner can come back (on the web page).
    """
    now = utc_now()
    sub = find_subscriber(engine, email)
    if sub is None:
        status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
        sub = add_subscriber(engine, email, rules, now=now, name=name, status=status)
        if confirmed:
            return sub
        _claim_confirmation(engine, sub, now)
    elif sub.status == SubscriberStatus.UNSUBSCRIBED:
        raise SubscriberError(f"{sub.email} unsubscribed; only they can subscribe again (on the web page)")
    elif sub.status == SubscriberStatus.PENDING and not confirmed:
        # The hourly slot is claimed before anything changes: a refused command leaves the subscription as
        # it was. New rules bump the link version: the earlier mail's link confirmed the earlier rules.
        _claim_confirmation(engine, sub, now)
        sub = set_rules(engine, sub.id, rules, now=now)
    else:
        sub = set_rules(engine, sub.id, rules, now=now)
        if confirmed and sub.status in (SubscriberStatus.PENDING, SubscriberStatus.BOUNCED):
            sub = set_status(engine, sub.id, SubscriberStatus.ACTIVE, now=now)
        return sub
    await _mail_confirmation(config, engine, sub)
    return sub


def _claim_confirmation(engine: Engine, sub: Subscriber, now: datetime) -> None:
    if not record_confirmation_sent(engine, sub.id, now):
        raise SubscriberError(
            f"{sub.email}: a confirmation mail went out less than an hour ago; try again later"
        )


async def _mail_confirmation(config: Config, engine: Engine, sub: Subscriber) -> None:
    """Send the confirmation mail whose hourly slot was just claimed; give the slot back if nothing went out.

    It takes the one service-mail path (``digest.outgoing``): signed and headed like the web form's.
    """
    rendered = render_confirmation(config, config.secret_key(), sub)
    unsub = unsubscribe_url(config, config.secret_key(), sub)
    outcome = await _send(config, sub, rendered, unsub)
    if outcome.status == "sent":
        return
    if outcome.status == "uncertain":  # it may have arrived: the hourly slot stays taken
        raise SubscriberError(f"{sub.email}: the connection dropped while sending the confirmation mail")
    release_confirmation_claim(engine, sub.id)  # nothing went out: a retry must not wait an hour
    if outcome.code is None:
        raise DeliveryError(outcome.reply)
    raise SubscriberError(f"{sub.email}: the confirmation mail was refused: {outcome.code} {outcome.reply}")


async def _send(config: Config, sub: Subscriber, rendered: RenderedEmail, unsub: str) -> SendOutcome:
    """Through an SMTP pool of the config, opened for this one mail."""
    try:
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            return await ServiceMail.for_config(config, pool).send(
                sub.email, rendered, unsub, "confirmation mail"
            )
    except DeliveryError as exc:  # the server could not be reached: nothing went out
        return SendOutcome("temporary", None, str(exc))


def admin_set_send_time(
    engine: Engine, email: str, send_time: str | None, timezone: str | None, *, clock: Clock = utc_now
) -> Subscriber:
    """Give an address its own send time and zone (admin); ``send_time`` None: follow ``[schedule]``."""
    sub = find_subscriber(engine, email)
    if sub is None:
        raise SubscriberError(f"{email}: no such subscriber (see 'digest subscribers')")
    return set_send_time(engine, sub.id, send_time, timezone, clock(), allow_managed=True)


def admin_unsubscribe(config: Config, engine: Engine, email: str, *, clock: Clock = utc_now) -> None:
    """Unsubscribe an address (admin; config-managed ones too)."""
    sub = find_subscriber(engine, email)
    if sub is None:
        raise SubscriberError(f"{email}: no such subscriber (see 'digest subscribers')")
    set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=clock(), allow_managed=True)


def check_config_subscribers(config: Config) -> None:
    """Validate the addresses and rules of [[subscribers]]; ConfigError names the file, the key and the rule."""
    problems: list[str] = []
    for i, entry in enumerate(config.subscribers):
        try:
            normalize_email(entry.email)
        except SubscriberError as exc:
            problems.append(f"{config.path}: subscribers.{i}.email: {exc}")
        for key, value, check in (
            ("send_time", entry.send_time, parse_send_time),
            ("timezone", entry.timezone, parse_timezone),
        ):
            try:
                if value is not None:
                    check(value)
            except SubscriberError as exc:
                problems.append(f"{config.path}: subscribers.{i}.{key}: {exc}")
        for j, query in enumerate(entry.rules):
            try:
                validate_rules([query])
            except RuleError as exc:
                problems.append(f"{config.path}: subscribers.{i}.rules.{j}: {exc}")
    problems.extend(likes.config_problems(config))
    if problems:
        raise ConfigError(problems)


def sync_subscribers(config: Config, engine: Engine) -> Any:
    """Make the database's config-managed subscribers match the [[subscribers]] of the config."""
    check_config_subscribers(config)
    return sync_config_subscribers(engine, config.subscribers, utc_now())
