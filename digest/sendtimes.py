"""Each subscriber's own send time: when a digest is due, in pure functions of ``now`` (no clock, no I/O).

A subscriber with a ``send_time`` ("HH:MM", 15-minute steps) gets the digest of their local date once that
time has passed in their ``timezone`` (the ``[schedule]`` zone when they chose none). One who never chose a
send time follows the ``[schedule] cron`` exactly as before: due on the cron's date once it has fired.

Daylight saving time: a send time that does not exist on a day (the spring-forward gap) is taken as the
first valid minute after it; one that happens twice (the autumn fold) is its first occurrence, and the
``UNIQUE(subscriber_id, local_date)`` key of the outbox keeps the second from sending again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import SubscriberError
from digest.models import Cadence

#: Send times are offered and accepted in steps of this many minutes (the slot interval).
STEP_MINUTES = 15
#: The longest daylight-saving gap in the tz database is shorter than this.
_MAX_GAP = timedelta(hours=3)


def parse_send_time(text: str) -> str:
    """``text`` as a canonical "HH:MM" on a 15-minute step; SubscriberError with the problem otherwise."""
    value = text.strip()
    hours, sep, minutes = value.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and 1 <= len(hours) <= 2):
        raise SubscriberError(f"send time must be HH:MM, like 07:30 (got {text!r})")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise SubscriberError(f"send time must be a time of day from 00:00 to 23:45 (got {text!r})")
    if m % STEP_MINUTES:
        raise SubscriberError(f"send time must be on a quarter hour (:00, :15, :30, :45), got {text!r}")
    return f"{h:02d}:{m:02d}"


def parse_timezone(name: str) -> str:
    """``name`` when it is an IANA time zone (``Europe/Berlin``); SubscriberError otherwise."""
    value = name.strip()
    if not value or len(value) > 64 or value.startswith("/") or ".." in value:
        raise SubscriberError(f"time zone must be an IANA name like Europe/Berlin (got {name!r})")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriberError(f"unknown time zone {name!r}: use an IANA name like Europe/Berlin") from None
    return value


def send_instant(day: date, send_time: str, zone: ZoneInfo) -> datetime:
    """The moment (UTC) of ``send_time`` on ``day`` in ``zone``: a time skipped by a DST change is moved
    to the first minute that exists after it; a time that happens twice is its first occurrence."""
    hours, minutes = (int(x) for x in send_time.split(":"))
    wanted = datetime(day.year, day.month, day.day, hours, minutes)
    candidate = wanted
    while candidate - wanted <= _MAX_GAP:
        aware = candidate.replace(tzinfo=zone, fold=0)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == candidate:
            return aware.astimezone(UTC)
        candidate += timedelta(minutes=1)
    return wanted.replace(tzinfo=zone).astimezone(UTC)  # no such zone rule exists; keep a defined answer


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the slot needs to know about one active subscriber (no rules, no address)."""

    id: int
    cadence: Cadence = Cadence.DAILY
    weekday: int = 0
    send_time: str | None = None
    timezone: str | None = None


def is_due_on(cadence: Cadence, weekday: int, day: date) -> bool:
    """Daily digests are due every day, weekly ones on their weekday (0 = Monday) of the local date."""
    return cadence != Cadence.WEEKLY or weekday == day.weekday()


def due_date(sub: Schedule, now: datetime, default_zone: ZoneInfo, cron_date: date | None) -> date | None:
    """The local date whose digest ``sub`` is due at ``now``, or None.

    ``cron_date`` is the date of the ``[schedule] cron`` fire of today that has already happened (None when
    today's fire is still to come): it is the date of everyone without a send time of their own.
    """
    if sub.send_time is None:
        if cron_date is None or not is_due_on(sub.cadence, sub.weekday, cron_date):
            return None
        return cron_date
    zone = _zone(sub.timezone, default_zone)
    today = now.astimezone(zone).date()
    if not is_due_on(sub.cadence, sub.weekday, today):
        return None
    return today if now >= send_instant(today, sub.send_time, zone) else None


def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if name is None:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # a zone the tz database no longer knows: the default
        return default


def slot_groups(
    subs: Iterable[Schedule],
    now: datetime,
    default_zone: ZoneInfo,
    cron_date: date | None,
    already: Collection[tuple[int, date]] = (),
) -> dict[date, list[int]]:
    """The subscribers due at ``now`` without a digest for their local date yet, by local date.

    ``already`` holds the (subscriber id, local date) pairs that have an outbox row: those are done, so a
    slot repeated (or a catch-up after downtime) never plans anyone twice for one local date.
    """
    out: dict[date, list[int]] = {}
    for sub in subs:
        day = due_date(sub, now, default_zone, cron_date)
        if day is not None and (sub.id, day) not in already:
            out.setdefault(day, []).append(sub.id)
    return out


def candidate_dates(now: datetime) -> tuple[date, date, date]:
    """The local dates any zone can be on at ``now`` (UTC-12 to UTC+14): the outbox rows worth reading."""
    day = now.astimezone(UTC).date()
    return day - timedelta(days=1), day, day + timedelta(days=1)


def send_time_choices() -> list[str]:
    """Every send time a subscriber may pick, "00:00" to "23:45"."""
    return [f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 24 * 60, STEP_MINUTES)]
