"""The web form's double opt-in: a subscription request for any state of the address, the confirmation
claim (at most one confirmation mail per address per hour, across processes) and the confirmation itself."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from digest.addresses import normalize_email
from digest.errors import SubscriberError
from digest.models import Cadence, Subscriber, SubscriberStatus
from digest.store.subscriber_rows import (
    Consent,
    checked_name,
    clean_rules,
    consent_values,
    insert_subscriber,
    load,
    reload,
    replace_rules,
    utc,
)
from digest.store.tables import subscriber

__all__ = [
    "Consent",
    "SubscribeOutcome",
    "confirm_subscriber",
    "record_confirmation_sent",
    "request_subscription",
]

#: At most one confirmation mail per address in this window (the lock against subscription bombing).
CONFIRMATION_INTERVAL = timedelta(hours=1)
#: An address that said no (unsubscribed) gets at most one confirmation mail from the form in this window,
#: until it confirms again.
RESUBSCRIBE_INTERVAL = timedelta(days=7)


class SubscribeOutcome(enum.StrEnum):
    """What :func:`request_subscription` did; the web answers the same page whatever it is."""

    NEW = "new"  # a new pending subscriber: send the confirmation mail
    PENDING = "pending"  # was pending: rules and consent replaced, send the confirmation again
    # (when the rules or name changed, token_version was bumped: earlier confirmation links are dead)
    RESUBSCRIBED = "resubscribed"  # was unsubscribed/bounced: pending again, send the confirmation
    ACTIVE = (
        "active"  # already subscribed (active or paused): nothing changed; remind them of the manage link
    )
    MANAGED = "managed"  # managed by the config file: nothing changed, no mail
    # the address bounced: nothing changed and no mail, ever, from the form (the visitor sees the same page)
    BOUNCED = "bounced"
    # new rules or name for a not-yet-active address mailed a confirmation less than an hour ago: nothing
    # changed and no mail goes out (the link in that mail keeps confirming what its owner asked for)
    TOO_SOON = "too_soon"


def request_subscription(
    engine: sa.Engine,
    email: str,
    rules: Sequence[str],
    *,
    now: datetime,
    name: str | None = None,
    consent: Consent | None = None,
) -> tuple[Subscriber, SubscribeOutcome]:
    """What the web's subscribe form does, in one transaction, for any state of the address.

    A pending or unsubscribed address gets the new rules and consent and is pending again (an unsubscribed
    one at most once per RESUBSCRIBE_INTERVAL); an active or paused one is left alone (a stranger must not be
    able to change someone's rules) and so are a config-managed and a bounced one (no mail to an address
    that bounced). The caller answers the same page in every case.

    Anyone can send the form for any address, so when it changes the rules or name of a pending (or
    unsubscribed/bounced) address, ``token_version`` is bumped: a confirmation link mailed before (which the
    owner may still click) no longer activates rules its owner never saw; only the next mail's link does.
    """
    form = _Form(normalize_email(email), clean_rules(rules), checked_name(name), utc(now), consent)
    for _attempt in range(2):  # a concurrent insert of the same address: the second pass sees it
        try:
            with engine.begin() as conn:
                sub = load(conn, subscriber.c.email == form.address)
                if sub is None:
                    return _insert(conn, form), SubscribeOutcome.NEW
                if sub.managed_by_config:
                    return sub, SubscribeOutcome.MANAGED
                if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
                    return sub, SubscribeOutcome.ACTIVE
                if sub.status == SubscriberStatus.BOUNCED:
                    return sub, SubscribeOutcome.BOUNCED
                return _renew(conn, sub, form)
        except sa.exc.IntegrityError:
            continue
    raise SubscriberError(f"{form.address}: could not store the subscription; try again")


@dataclass(frozen=True, slots=True)
class _Form:
    """A subscription request, checked and cleaned."""

    address: str
    queries: list[str]
    name: str | None
    when: datetime
    consent: Consent | None


def _insert(conn: sa.Connection, form: _Form) -> Subscriber:
    values = {
        "email": form.address,
        "name": form.name,
        "status": SubscriberStatus.PENDING.value,
        "cadence": Cadence.DAILY.value,
        "weekday": 0,
        "managed_by_config": False,
        "created_at": form.when,
        "updated_at": form.when,
        "token_version": 0,
        **consent_values(form.consent),
    }
    return reload(conn, insert_subscriber(conn, values, form.queries))


def _renew(conn: sa.Connection, sub: Subscriber, form: _Form) -> tuple[Subscriber, SubscribeOutcome]:
    """A pending or unsubscribed address asks again: pending with the new rules and consent."""
    outcome = (
        SubscribeOutcome.PENDING if sub.status == SubscriberStatus.PENDING else SubscribeOutcome.RESUBSCRIBED
    )
    changed = [r.query for r in sub.rules] != form.queries or sub.name != form.name
    where = [subscriber.c.id == sub.id]
    if changed or sub.status == SubscriberStatus.UNSUBSCRIBED:
        # While the last confirmation mail is fresh (its link is the one the owner will click),
        # nobody can swap the rules under it: the conditional update changes nothing.
        where.append(_confirmation_claim_free(form.when))
    done = conn.execute(
        sa.update(subscriber)
        .where(*where)
        .values(
            status=SubscriberStatus.PENDING.value,
            name=form.name,
            updated_at=form.when,
            hard_bounces=0,
            token_version=subscriber.c.token_version + (1 if changed else 0),
            **consent_values(form.consent),
        )
    )
    if done.rowcount != 1:
        return sub, SubscribeOutcome.TOO_SOON
    if changed:
        replace_rules(conn, sub.id, form.queries)
    return reload(conn, sub.id), outcome


def confirm_subscriber(engine: sa.Engine, subscriber_id: int, *, now: datetime) -> bool:
    """Activate a pending subscriber (double opt-in). True when this call activated it, False if it was
    not pending (already confirmed, unsubscribed since, or unknown): a conditional update, so two clicks
    on the link send one welcome mail."""
    when = utc(now)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id, subscriber.c.status == SubscriberStatus.PENDING.value)
            .values(
                status=SubscriberStatus.ACTIVE.value, confirmed_at=when, updated_at=when, unsubscribed_at=None
            )
        )
        return result.rowcount == 1


def _confirmation_claim_free(when: datetime) -> sa.ColumnElement[bool]:
    """No confirmation mail went to this row within CONFIRMATION_INTERVAL before ``when`` (within
    RESUBSCRIBE_INTERVAL for an address that unsubscribed and has not confirmed since)."""
    last = subscriber.c.last_confirmation_sent_at
    said_no = sa.or_(
        subscriber.c.status == SubscriberStatus.UNSUBSCRIBED.value, subscriber.c.unsubscribed_at.is_not(None)
    )
    return sa.or_(
        last.is_(None),
        sa.and_(sa.not_(said_no), last <= when - CONFIRMATION_INTERVAL),
        last <= when - RESUBSCRIBE_INTERVAL,
    )


def record_confirmation_sent(engine: sa.Engine, subscriber_id: int, now: datetime) -> bool:
    """Claim the right to send a confirmation mail now: True at most once per address per hour.

    A conditional UPDATE, so two concurrent requests cannot both win (the lock against subscription bombing).
    """
    when = utc(now)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id, _confirmation_claim_free(when))
            .values(last_confirmation_sent_at=when)
        )
        return result.rowcount == 1


def release_confirmation_claim(engine: sa.Engine, subscriber_id: int) -> None:
    """Undo ``record_confirmation_sent`` when the mail could not be sent, so a retry is not locked out."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(last_confirmation_sent_at=None)
        )
