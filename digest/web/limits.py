"""The subscribe form's limits (per client IP, per address), kept in the database (``digest.store.limits``)
so that every process serving the site counts together."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from digest.store import limits
from digest.store.db import Engine


class SharedLimit:
    """At most ``count`` hits per ``seconds`` per key, on the app's clock, for every process on the database.

    Keys are stored as a keyed hash (HMAC with the site's secret): the table never holds an address or IP.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        rate: tuple[int, float],
        clock: Callable[[], datetime],
        secret: str,
    ) -> None:
        self.engine = engine
        self.window = limits.Window(rate[0], timedelta(seconds=rate[1]))
        self.clock = clock
        self._key = hmac.new(secret.encode(), f"paper-digest/limit/{name}".encode(), hashlib.sha256).digest()

    def key(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def hit(self, value: str) -> float | None:
        """Count one hit; None when allowed, else the seconds to wait."""
        return limits.hit(self.engine, self.key(value), self.window, self.clock())

    def full(self, value: str) -> bool:
        """True when ``value`` has no hit left in its window (nothing is counted)."""
        return limits.full(self.engine, self.key(value), self.window, self.clock())
