"""What every config section shares: the strict frozen model, secrets from the environment, URL checks."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from digest.errors import ConfigError

#: Values that are never a real secret.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "placeholder", "xxx", "replace-me"})
#: A bare address (no display name), as the config accepts one.
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}")


class Section(BaseModel):
    """A config section: unknown keys are errors, values are frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (plain SMTP is allowed only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_http_url(v: str) -> str:
    """``v`` when it is an http(s) URL on one line; ValueError otherwise."""
    if not (v.startswith("https://") or v.startswith("http://")) or any(c in v for c in "\r\n\0 "):
        raise ValueError(f"expected an http(s) URL, got {v!r}")
    return v


def read_secret(env_name: str, path: Path, key: str, *, required: bool) -> str | None:
    """A secret from ``$NAME`` or from the file named by ``$NAME_FILE`` (Docker secrets)."""
    value = os.environ.get(env_name)
    if value:
        return value.strip()
    file_name = os.environ.get(f"{env_name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                [f"{path}: {key}: cannot read ${env_name}_FILE={file_name} ({exc.strerror})"]
            ) from None
    if required:
        raise ConfigError(
            [f"{path}: {key}: set ${env_name} or ${env_name}_FILE (secrets never sit in the file)"]
        )
    return None


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_for_apscheduler(expr: str) -> str:
    """A standard crontab line as APScheduler 3 reads it: numeric weekdays become names.

    APScheduler numbers weekdays from 0 = Monday while cron uses 0 (or 7) = Sunday, so "0 7 * * 1" would
    fire on Tuesdays. Names mean the same to both.
    """
    fields = expr.split()
    if len(fields) != 5:
        return expr

    def item(part: str) -> str:
        value, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if value == "*":
            low, high = 0, 6
        elif value.isdigit():
            low = high = int(value)
            if step is not None:  # "1/2": from 1 to the end of the week
                high = 6
        elif "-" in value and all(x.isdigit() for x in value.split("-", 1)):
            low, high = (int(x) for x in value.split("-", 1))
        else:
            return part  # names (mon-fri) or something APScheduler will judge
        if step is None and value == "*":
            return part
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high):
            return part
        days = sorted({_CRON_DAYS[d] for d in range(low, high + 1, step or 1)}, key=_CRON_DAYS.index)
        return ",".join(days)

    fields[4] = ",".join(item(p) for p in fields[4].split(","))
    return " ".join(fields)


def check_cron(v: str) -> str:
    """A 5-field cron expression that APScheduler reads and that fires some day."""
    if len(v.split()) != 5:
        raise ValueError(f"expected 5 cron fields 'minute hour day month weekday', got {v!r}")
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(crontab_for_apscheduler(v), timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {v!r}: {exc}") from None
    from datetime import UTC, datetime

    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError(f"the cron expression {v!r} never fires")
    return v
