"""The "when" fields of the subscribe and manage forms: an own send time (quarter hours) and a time zone.

The zone list is the tz database's canonical names; the browser's zone is pre-selected by app.js (Intl API)
on a fresh form, and without JavaScript the ``[schedule]`` zone is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from digest.config import Config
from digest.errors import SubscriberError
from digest.sendtimes import parse_send_time, parse_timezone, send_time_choices

_LEGACY_PREFIXES = ("posix/", "right/", "Etc/", "SystemV/", "US/", "Canada/", "Brazil/", "Mexico/", "Chile/")


@lru_cache(maxsize=1)
def zone_choices() -> tuple[str, ...]:
    """Area/City zone names, sorted, plus UTC (the legacy aliases left out)."""
    names = {z for z in available_timezones() if "/" in z and not z.startswith(_LEGACY_PREFIXES)}
    return ("UTC", *sorted(names))


def choices(config: Config) -> dict[str, Any]:
    """What the templates need to draw the fields."""
    zones = zone_choices()
    default = config.schedule.timezone
    return {
        "send_times": send_time_choices(),
        "zones": zones if default in zones else (default, *zones),
        "default_zone": default,
    }


@dataclass(frozen=True, slots=True)
class SendTime:
    """The fields, checked: ``send_time`` None means "with everyone, at the list's time"."""

    send_time: str | None
    timezone: str | None


def check_fields(send_time: str, timezone: str, config: Config) -> SendTime:
    """The form's values checked; SubscriberError with a sentence for the page."""
    if not send_time.strip():
        return SendTime(None, None)
    try:
        hhmm = parse_send_time(send_time)
        zone = parse_timezone(timezone or config.schedule.timezone)
    except SubscriberError as exc:
        raise SubscriberError(f"{exc}.") from None
    return SendTime(hhmm, zone)
