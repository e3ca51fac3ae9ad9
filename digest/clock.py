"""The one clock and the time-zone helpers.

Nothing below the orchestration reads the clock: ``utc_now`` is the default of the ``clock`` parameters that
the run, the scheduler and the web take (tests pass a frozen one). The database hands back naive datetimes
on SQLite: ``as_utc`` reads them as UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: A source of the current time (aware, UTC); ``utc_now`` in production, a frozen one in tests.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one (SQLite keeps no zone) is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def maybe_utc(value: datetime | None) -> datetime | None:
    """``as_utc`` that lets None through (a column that may be empty)."""
    return None if value is None else as_utc(value)
