"""The subscriber repository: every read and write of ``subscriber`` and ``rule`` (SQLAlchemy Core).

Times are stored in UTC. Each public function is one transaction. Config-managed subscribers (from
``[[subscribers]]`` in config.toml) cannot be changed through the web: the functions the web calls raise
SubscriberError for them unless ``allow_managed=True`` (an unsubscribe is always honoured: the law beats
the config file).

Deleting "all my data" keeps the row but empties it: the address becomes ``deleted-<id>@deleted.invalid``
(a placeholder that cannot be turned back into the address and that no real address can collide with,
since ``.invalid`` is refused by :func:`digest.addresses.normalize_email`), the name, rules, delivered
history, delivery replies, IP address, user agent and form copy go; what stays is the minimal record of
consent and its withdrawal (consent time and source, unsubscribe time) that a data protection audit asks for.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.addresses import normalize_email
from digest.config import WEEKDAYS, SubscriberEntry
from digest.errors import SubscriberError
from digest.models import Cadence, Rule, Subscriber, SubscriberStatus
from digest.rules import validate_rules
from digest.store.tables import delivered_paper, delivery, rule, subscriber

#: At most one confirmation mail per address in this window (the lock against subscription bombing).
CONFIRMATION_INTERVAL = timedelta(hours=1)
MAX_RULES = 20
MAX_NAME_LENGTH = 100
DELETED_DOMAIN = "deleted.invalid"


@dataclass(frozen=True, slots=True)
class Consent:
    """How and when someone asked for the digest (the proof of opt-in)."""

    at: datetime
    source: str  # "web", "cli", "config"
    ip: str | None = None
    user_agent: str | None = None
    form: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SubscriberInfo:
    """One line of ``digest subscribers``."""

    email: str
    status: str
    rules: list[str]
    cadence: str
    last_digest_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The contract shape of ``subscribers --json``."""
        return {
            "email": self.email,
            "status": self.status,
            "rules": list(self.rules),
            "cadence": self.cadence,
            "last_digest_at": self.last_digest_at.isoformat() if self.last_digest_at else None,
        }


@dataclass(slots=True)
class SyncResult:
    """What :func:`sync_config_subscribers` changed (addresses)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # web subscribers that became config-managed
    unsubscribed: list[str] = field(default_factory=list)  # managed ones no longer in the config
    kept_unsubscribed: list[str] = field(default_factory=list)  # in the config but unsubscribed themselves
    kept_bounced: list[str] = field(default_factory=list)  # in the config but their address bounces
    unchanged: int = 0


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
    # new rules or name for a not-yet-active address mailed a confirmation less than an hour ago: nothing
    # changed and no mail goes out (the link in that mail keeps confirming what its owner asked for)
    TOO_SOON = "too_soon"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware 'now' (UTC)")
    return value.astimezone(UTC)


def _read_time(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we write is UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    cleaned = " ".join(name.split())
    if any(ord(c) < 32 for c in cleaned):
        raise SubscriberError("the name must be one line of text")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise SubscriberError(f"the name is longer than {MAX_NAME_LENGTH} characters; shorten it")
    return cleaned or None


def _clean_rules(rules: Sequence[str]) -> list[str]:
    queries = [q.strip() for q in rules if q.strip()]
    if not queries:
        raise SubscriberError('give at least one rule, like: diffusion OR "flow matching"')
    if len(queries) > MAX_RULES:
        raise SubscriberError(f"at most {MAX_RULES} rules per subscriber; combine some with OR")
    return list(validate_rules(queries))


def _weekday(value: int) -> int:
    if not 0 <= value <= 6:
        raise SubscriberError(f"weekday must be 0 (Monday) to 6 (Sunday), got {value}")
    return value


_RULES_BASE = sa.select(rule.c.subscriber_id, rule.c.name, rule.c.query).order_by(
    rule.c.subscriber_id, rule.c.position, rule.c.id
)
_RULES_OF = _RULES_BASE.where(rule.c.subscriber_id.in_(sa.bindparam("ids", expanding=True)))


def _rules_by_subscriber(conn: sa.Connection, ids: sa.Select[Any] | Sequence[int]) -> dict[int, list[Rule]]:
    """Every rule of the given subscribers, in one query."""
    if isinstance(ids, sa.Select):
        rows = conn.execute(_RULES_BASE.where(rule.c.subscriber_id.in_(ids)))
    else:  # a list of ids: the prebuilt statement (this runs for every delivery batch)
        rows = conn.execute(_RULES_OF, {"ids": list(ids)})
    out: dict[int, list[Rule]] = defaultdict(list)
    for sid, name, query_text in rows:
        out[sid].append(Rule(query=query_text, name=name or ""))
    return out


def _to_subscriber(row: sa.Row[Any], rules: Sequence[Rule]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        rules=tuple(rules),
        name=row.name,
        status=SubscriberStatus(row.status),
        cadence=Cadence(row.cadence),
        weekday=row.weekday,
        managed_by_config=bool(row.managed_by_config),
        token_version=row.token_version,
    )


def _load(conn: sa.Connection, where: sa.ColumnElement[bool]) -> Subscriber | None:
    row = conn.execute(sa.select(subscriber).where(where)).first()
    if row is None:
        return None
    return _to_subscriber(row, _rules_by_subscriber(conn, [row.id]).get(row.id, []))


def _require(conn: sa.Connection, subscriber_id: int, *, allow_managed: bool) -> Subscriber:
    sub = _load(conn, subscriber.c.id == subscriber_id)
    if sub is None or sub.email.endswith("@" + DELETED_DOMAIN):
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    if sub.managed_by_config and not allow_managed:
        raise SubscriberError(
            f"{sub.email} is managed in the configuration file; change it there (the operator does)"
        )
    return sub


def _replace_rules(conn: sa.Connection, subscriber_id: int, queries: Sequence[str]) -> None:
    conn.execute(sa.delete(rule).where(rule.c.subscriber_id == subscriber_id))
    if queries:
        conn.execute(
            sa.insert(rule),
            [
                {"subscriber_id": subscriber_id, "position": i, "name": "", "query": q}
                for i, q in enumerate(queries)
            ],
        )


def _consent_values(consent: Consent | None) -> dict[str, Any]:
    if consent is None:
        return {}
    return {
        "consent_at": _utc(consent.at),
        "consent_source": consent.source[:64],
        "consent_ip": consent.ip[:64] if consent.ip else None,
        "consent_user_agent": consent.user_agent[:300] if consent.user_agent else None,
        "consent_form": consent.form,
    }


def add_subscriber(
    engine: sa.Engine,
    email: str,
    rules: Sequence[str],
    *,
    now: datetime,
    name: str | None = None,
    status: SubscriberStatus = SubscriberStatus.PENDING,
    cadence: Cadence = Cadence.DAILY,
    weekday: int = 0,
    managed_by_config: bool = False,
    consent: Consent | None = None,
) -> Subscriber:
    """Store a new subscriber with its rules. SubscriberError if the address is invalid or already known;
    RuleError if a rule does not parse."""
    address = normalize_email(email)
    queries = _clean_rules(rules)
    clean_name = _clean_name(name)
    when = _utc(now)
    values: dict[str, Any] = {
        "email": address,
        "name": clean_name,
        "status": SubscriberStatus(status).value,
        "cadence": Cadence(cadence).value,
        "weekday": _weekday(weekday),
        "managed_by_config": managed_by_config,
        "created_at": when,
        "updated_at": when,
        "confirmed_at": when if status == SubscriberStatus.ACTIVE else None,
        "token_version": 0,
        **_consent_values(consent),
    }
    try:
        with engine.begin() as conn:
            new_id = conn.execute(
                sa.insert(subscriber).values(**values).returning(subscriber.c.id)
            ).scalar_one()
            _replace_rules(conn, new_id, queries)
            created = _load(conn, subscriber.c.id == new_id)
    except sa.exc.IntegrityError:
        raise SubscriberError(f"{address} is already a subscriber") from None
    assert created is not None
    return created


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

    A pending, unsubscribed or bounced address gets the new rules and consent and is pending again; an
    active or paused one is left alone (a stranger must not be able to change someone's rules) and so is a
    config-managed one. The caller answers the same page in every case.

    Anyone can send the form for any address, so when it changes the rules or name of a pending (or
    unsubscribed/bounced) address, ``token_version`` is bumped: a confirmation link mailed before (which the
    owner may still click) no longer activates rules its owner never saw; only the next mail's link does.
    """
    address = normalize_email(email)
    queries = _clean_rules(rules)
    clean_name = _clean_name(name)
    when = _utc(now)
    for _attempt in range(2):  # a concurrent insert of the same address: the second pass sees it
        try:
            with engine.begin() as conn:
                sub = _load(conn, subscriber.c.email == address)
                if sub is None:
                    new_id = conn.execute(
                        sa.insert(subscriber)
                        .values(
                            email=address,
                            name=clean_name,
                            status=SubscriberStatus.PENDING.value,
                            cadence=Cadence.DAILY.value,
                            weekday=0,
                            managed_by_config=False,
                            created_at=when,
                            updated_at=when,
                            token_version=0,
                            **_consent_values(consent),
                        )
                        .returning(subscriber.c.id)
                    ).scalar_one()
                    _replace_rules(conn, new_id, queries)
                    created = _load(conn, subscriber.c.id == new_id)
                    assert created is not None
                    return created, SubscribeOutcome.NEW
                if sub.managed_by_config:
                    return sub, SubscribeOutcome.MANAGED
                if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
                    return sub, SubscribeOutcome.ACTIVE
                outcome = (
                    SubscribeOutcome.PENDING
                    if sub.status == SubscriberStatus.PENDING
                    else SubscribeOutcome.RESUBSCRIBED
                )
                changed = [r.query for r in sub.rules] != queries or sub.name != clean_name
                where = [subscriber.c.id == sub.id]
                if changed:
                    # While the last confirmation mail is fresh (its link is the one the owner will click),
                    # nobody can swap the rules under it: the conditional update changes nothing.
                    where.append(_confirmation_claim_free(when))
                done = conn.execute(
                    sa.update(subscriber)
                    .where(*where)
                    .values(
                        status=SubscriberStatus.PENDING.value,
                        name=clean_name,
                        updated_at=when,
                        hard_bounces=0,
                        token_version=subscriber.c.token_version + (1 if changed else 0),
                        **_consent_values(consent),
                    )
                )
                if done.rowcount != 1:
                    return sub, SubscribeOutcome.TOO_SOON
                if changed:
                    _replace_rules(conn, sub.id, queries)
                renewed = _load(conn, subscriber.c.id == sub.id)
                assert renewed is not None
                return renewed, outcome
        except sa.exc.IntegrityError:
            continue
    raise SubscriberError(f"{address}: could not store the subscription; try again")


def get_subscriber(engine: sa.Engine, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id, or None."""
    with engine.connect() as conn:
        return _load(conn, subscriber.c.id == subscriber_id)


def find_subscriber(engine: sa.Engine, email: str) -> Subscriber | None:
    """The subscriber with this address (any case or form of it), or None; None for an invalid address."""
    try:
        address = normalize_email(email)
    except SubscriberError:
        return None
    with engine.connect() as conn:
        return _load(conn, subscriber.c.email == address)


def set_rules(
    engine: sa.Engine, subscriber_id: int, rules: Sequence[str], *, now: datetime, allow_managed: bool = False
) -> Subscriber:
    """Replace the subscriber's rules (validated: RuleError names the bad one).

    For a pending subscription whose rules change, ``token_version`` is bumped: a confirmation link mailed
    before confirms the rules it was sent with, never new ones.
    """
    queries = _clean_rules(rules)
    with engine.begin() as conn:
        current = _require(conn, subscriber_id, allow_managed=allow_managed)
        changed = [r.query for r in current.rules] != list(queries)
        _replace_rules(conn, subscriber_id, queries)
        bump = 1 if changed and current.status == SubscriberStatus.PENDING else 0
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(updated_at=_utc(now), token_version=subscriber.c.token_version + bump)
        )
        updated = _load(conn, subscriber.c.id == subscriber_id)
    assert updated is not None
    return updated


def set_status(
    engine: sa.Engine,
    subscriber_id: int,
    status: SubscriberStatus,
    *,
    now: datetime,
    allow_managed: bool = False,
) -> Subscriber:
    """Move the subscriber to ``status``. Idempotent: the first unsubscribe time and confirm time are kept.

    An unsubscribe is allowed for config-managed subscribers whatever ``allow_managed`` says.
    """
    status = SubscriberStatus(status)
    when = _utc(now)
    with engine.begin() as conn:
        current = _require(
            conn, subscriber_id, allow_managed=allow_managed or status == SubscriberStatus.UNSUBSCRIBED
        )
        values: dict[str, Any] = {"status": status.value}
        if current.status != status:
            values["updated_at"] = when
        if status == SubscriberStatus.UNSUBSCRIBED and current.status != status:
            values["unsubscribed_at"] = when
        if status == SubscriberStatus.ACTIVE:
            values["unsubscribed_at"] = None
            values["hard_bounces"] = 0
            values["confirmed_at"] = sa.func.coalesce(subscriber.c.confirmed_at, when)
        conn.execute(sa.update(subscriber).where(subscriber.c.id == subscriber_id).values(**values))
        updated = _load(conn, subscriber.c.id == subscriber_id)
    assert updated is not None
    return updated


def confirm_subscriber(engine: sa.Engine, subscriber_id: int, *, now: datetime) -> bool:
    """Activate a pending subscriber (double opt-in). True when this call activated it, False if it was
    not pending (already confirmed, unsubscribed since, or unknown): a conditional update, so two clicks
    on the link send one welcome mail."""
    when = _utc(now)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id, subscriber.c.status == SubscriberStatus.PENDING.value)
            .values(
                status=SubscriberStatus.ACTIVE.value, confirmed_at=when, updated_at=when, unsubscribed_at=None
            )
        )
        return result.rowcount == 1


def set_cadence(
    engine: sa.Engine,
    subscriber_id: int,
    cadence: Cadence,
    weekday: int,
    now: datetime,
    *,
    allow_managed: bool = False,
) -> Subscriber:
    """Daily or weekly (on ``weekday``, 0 = Monday)."""
    cadence = Cadence(cadence)
    day = _weekday(weekday)
    with engine.begin() as conn:
        _require(conn, subscriber_id, allow_managed=allow_managed)
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(cadence=cadence.value, weekday=day, updated_at=_utc(now))
        )
        updated = _load(conn, subscriber.c.id == subscriber_id)
    assert updated is not None
    return updated


def delete_subscriber_data(
    engine: sa.Engine, subscriber_id: int, now: datetime, *, allow_managed: bool = False
) -> None:
    """ "Delete all my data": see the module docstring for what is kept and why. Every mailed link dies."""
    when = _utc(now)
    with engine.begin() as conn:
        current = _require(conn, subscriber_id, allow_managed=allow_managed)
        conn.execute(sa.delete(rule).where(rule.c.subscriber_id == subscriber_id))
        conn.execute(sa.delete(delivered_paper).where(delivered_paper.c.subscriber_id == subscriber_id))
        # Final deliveries go; a delivery still in flight keeps its row (the run owns it) but loses the
        # SMTP reply, which often quotes the address.
        conn.execute(
            sa.delete(delivery).where(
                delivery.c.subscriber_id == subscriber_id,
                delivery.c.state.in_(["sent", "failed", "uncertain", "skipped"]),
            )
        )
        conn.execute(
            sa.update(delivery).where(delivery.c.subscriber_id == subscriber_id).values(last_reply=None)
        )
        was_unsubscribed = current.status == SubscriberStatus.UNSUBSCRIBED
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id == subscriber_id)
            .values(
                email=f"deleted-{subscriber_id}@{DELETED_DOMAIN}",
                name=None,
                status=SubscriberStatus.UNSUBSCRIBED.value,
                managed_by_config=False,
                updated_at=when,
                unsubscribed_at=subscriber.c.unsubscribed_at if was_unsubscribed else when,
                last_digest_at=None,
                last_confirmation_sent_at=None,
                consent_ip=None,
                consent_user_agent=None,
                consent_form=None,
                token_version=subscriber.c.token_version + 1,
            )
        )


def _not_deleted() -> sa.ColumnElement[bool]:
    deleted: sa.ColumnElement[bool] = subscriber.c.email.like(f"%@{DELETED_DOMAIN}")
    return sa.not_(deleted)


def list_subscribers(engine: sa.Engine) -> list[SubscriberInfo]:
    """Every subscriber (deleted ones excluded) by address, in two queries."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                subscriber.c.id,
                subscriber.c.email,
                subscriber.c.status,
                subscriber.c.cadence,
                subscriber.c.last_digest_at,
            )
            .where(_not_deleted())
            .order_by(subscriber.c.email)
        ).all()
        rules = _rules_by_subscriber(conn, sa.select(subscriber.c.id).where(_not_deleted()))
    return [
        SubscriberInfo(
            email=r.email,
            status=r.status,
            rules=[x.query for x in rules.get(r.id, [])],
            cadence=r.cadence,
            last_digest_at=_read_time(r.last_digest_at),
        )
        for r in rows
    ]


def active_subscribers(engine: sa.Engine) -> list[Subscriber]:
    """Active subscribers with their rules, by id, in two queries (never one per subscriber)."""
    active = subscriber.c.status == SubscriberStatus.ACTIVE.value
    with engine.connect() as conn:
        rows = conn.execute(sa.select(subscriber).where(active).order_by(subscriber.c.id)).all()
        rules = _rules_by_subscriber(conn, sa.select(subscriber.c.id).where(active))
    return [_to_subscriber(r, rules.get(r.id, [])) for r in rows]


def _confirmation_claim_free(when: datetime) -> sa.ColumnElement[bool]:
    """No confirmation mail went to this row within CONFIRMATION_INTERVAL before ``when``."""
    return sa.or_(
        subscriber.c.last_confirmation_sent_at.is_(None),
        subscriber.c.last_confirmation_sent_at <= when - CONFIRMATION_INTERVAL,
    )


def record_confirmation_sent(engine: sa.Engine, subscriber_id: int, now: datetime) -> bool:
    """Claim the right to send a confirmation mail now: True at most once per address per hour.

    A conditional UPDATE, so two concurrent requests cannot both win (the lock against subscription bombing).
    """
    when = _utc(now)
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


def sync_config_subscribers(
    engine: sa.Engine, entries: Sequence[SubscriberEntry], now: datetime
) -> SyncResult:
    """Make the database agree with ``[[subscribers]]`` in the config (run at start).

    Config entries become active, config-managed subscribers with the config's rules and cadence; a web
    subscriber listed in the config becomes config-managed. Managed subscribers no longer listed are
    unsubscribed and handed back to the web (not managed any more). Web subscribers not in the config are
    never touched. Bad addresses or rules raise before anything changes.

    The config never overrides what the address itself said: a listed address that unsubscribed (through a
    mailed link, managed or not) stays unsubscribed (``kept_unsubscribed``), and one whose mail bounced stays
    bounced (``kept_bounced``) instead of being mailed again on every start; both are left as they are and
    reported, so the operator can remove them from the file.

    Two processes may sync at once (two ``serve`` starting on one PostgreSQL): when the other one inserts
    the same new address first, the unique key refuses ours and the sync runs once more, now seeing it.
    """
    when = _utc(now)
    wanted: dict[str, tuple[SubscriberEntry, list[str]]] = {}
    for entry in entries:
        address = normalize_email(entry.email)
        if address in wanted:
            raise SubscriberError(f"{address} is listed twice in [[subscribers]]; keep one entry")
        wanted[address] = (entry, _clean_rules(entry.rules))
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                return _sync(conn, wanted, when)
        except sa.exc.IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _sync(
    conn: sa.Connection, wanted: dict[str, tuple[SubscriberEntry, list[str]]], when: datetime
) -> SyncResult:
    result = SyncResult()
    rows = {
        r.email: r
        for r in conn.execute(
            sa.select(subscriber).where(
                sa.or_(subscriber.c.managed_by_config.is_(True), subscriber.c.email.in_(list(wanted)))
            )
        )
    }
    current_rules = _rules_by_subscriber(conn, [r.id for r in rows.values()])
    for address, (entry, queries) in wanted.items():
        cadence = Cadence(entry.cadence).value
        weekday = WEEKDAYS.index(entry.weekday)
        clean_name = _clean_name(entry.name)
        row = rows.get(address)
        if row is None:
            new_id = conn.execute(
                sa.insert(subscriber)
                .values(
                    email=address,
                    name=clean_name,
                    status=SubscriberStatus.ACTIVE.value,
                    cadence=cadence,
                    weekday=weekday,
                    managed_by_config=True,
                    created_at=when,
                    updated_at=when,
                    confirmed_at=when,
                    token_version=0,
                    consent_at=when,
                    consent_source="config",
                )
                .returning(subscriber.c.id)
            ).scalar_one()
            _replace_rules(conn, new_id, queries)
            result.created.append(address)
            continue
        # An unsubscribe is always honoured, and a dead address is not revived by restarting the service.
        if row.status == SubscriberStatus.UNSUBSCRIBED.value:
            result.kept_unsubscribed.append(address)
            continue
        if row.status == SubscriberStatus.BOUNCED.value:
            result.kept_bounced.append(address)
            continue
        have = [x.query for x in current_rules.get(row.id, [])]
        same = (
            row.managed_by_config
            and row.status == SubscriberStatus.ACTIVE.value
            and row.cadence == cadence
            and row.weekday == weekday
            and row.name == clean_name
            and have == queries
        )
        if same:
            result.unchanged += 1
            continue
        values: dict[str, Any] = {
            "name": clean_name,
            "cadence": cadence,
            "weekday": weekday,
            "managed_by_config": True,
            "updated_at": when,
        }
        if row.status != SubscriberStatus.ACTIVE.value:  # pending or paused: the operator's list wins
            values.update(status=SubscriberStatus.ACTIVE.value, unsubscribed_at=None)
            values["confirmed_at"] = row.confirmed_at or when
        if not row.managed_by_config:
            values.update(consent_at=when, consent_source="config")
        conn.execute(sa.update(subscriber).where(subscriber.c.id == row.id).values(**values))
        if have != queries:
            _replace_rules(conn, row.id, queries)
        (result.updated if row.managed_by_config else result.adopted).append(address)
    gone = [r.id for a, r in rows.items() if r.managed_by_config and a not in wanted]
    if gone:
        conn.execute(
            sa.update(subscriber)
            .where(subscriber.c.id.in_(gone))
            .values(
                status=SubscriberStatus.UNSUBSCRIBED.value,
                managed_by_config=False,
                updated_at=when,
                unsubscribed_at=sa.func.coalesce(subscriber.c.unsubscribed_at, when),
            )
        )
        result.unsubscribed.extend(
            sorted(
                a
                for a, r in rows.items()
                if r.managed_by_config and a not in wanted and r.status != SubscriberStatus.UNSUBSCRIBED.value
            )
        )
    return result
