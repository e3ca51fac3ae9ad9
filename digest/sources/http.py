"""The HTTP client for the paper source: explicit timeouts, a descriptive User-Agent, polite retries.

Retries (tenacity) cover what is worth waiting for: 429 (honouring ``Retry-After``), 5xx, timeouts and
connection errors. Waits grow exponentially with jitter and everything runs under one total deadline, so
a source that is down ends the fetch with a ``SourceError`` instead of hanging the run.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from digest.config import SourceConfig
from digest.errors import SourceError

log = logging.getLogger("digest.sources")

# Statuses that say "try again later" rather than "you asked for the wrong thing".
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(520, 530))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. Tests shrink ``backoff_base_s`` so they run in milliseconds."""

    max_attempts: int = 5
    backoff_base_s: float = 1.0  # first wait; doubles per attempt, plus up to the same again as jitter
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0  # a Retry-After beyond this is capped (we still try, just sooner)


DEFAULT_RETRY = RetryPolicy()


@dataclass(slots=True)
class Deadline:
    """A total time budget on the monotonic clock, shared by every request of one fetch, and how hard
    each request of the fetch tries within it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    policy: RetryPolicy = DEFAULT_RETRY

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def using(self, policy: RetryPolicy) -> Deadline:
        """The same budget (same start), with ``policy`` for its requests."""
        return dataclasses.replace(self, policy=policy)


class _Transient(Exception):
    """One failed attempt that may succeed later."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(problem)


def new_client(source: SourceConfig) -> httpx.AsyncClient:
    """An AsyncClient with the configured timeouts and User-Agent (the caller closes it)."""
    return httpx.AsyncClient(
        timeout=timeout_for(source),
        headers={"User-Agent": source.user_agent},
        follow_redirects=True,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
    )


def timeout_for(source: SourceConfig, remaining: float | None = None) -> httpx.Timeout:
    """Connect/read/write/pool timeouts from ``source.timeout_s``, never beyond the deadline."""
    t = source.timeout_s if remaining is None else max(0.05, min(source.timeout_s, remaining))
    return httpx.Timeout(connect=t, read=t, write=t, pool=t)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; None when absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # The HTTP-date form is relative to the server's clock; reading ours is the only way to use it.
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    base = policy.backoff_base_s * 2.0 ** (attempt - 1)
    # Full jitter on top of the exponential step keeps many clients from retrying in lockstep.
    return min(policy.backoff_max_s, base + random.uniform(0, policy.backoff_base_s))


class _Attempts:
    """The retry hooks tenacity calls for one GET, and what they saw (for the log and the final error)."""

    def __init__(self, shown: str, deadline: Deadline, policy: RetryPolicy) -> None:
        self.shown, self.deadline, self.policy = shown, deadline, policy
        self.count = 0
        self.last_problem = ""

    def wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.retry_after_max_s)
        return _backoff(self.policy, state.attempt_number)

    def stop(self, state: RetryCallState) -> bool:
        # Give up when attempts run out or the next wait (plus a sliver of a request) passes the deadline.
        return (
            state.attempt_number >= self.policy.max_attempts
            or state.upcoming_sleep + 0.05 >= self.deadline.remaining()
        )

    def before_sleep(self, state: RetryCallState) -> None:
        log.warning(
            "%s: %s; retry %d/%d in %.2fs",
            self.shown,
            self.last_problem,
            state.attempt_number,
            self.policy.max_attempts - 1,
            state.upcoming_sleep,
        )

    def transient(self, problem: str, retry_after: float | None = None) -> _Transient:
        self.last_problem = problem
        return _Transient(problem, retry_after)


async def get(
    client: httpx.AsyncClient,
    source: SourceConfig,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    deadline: Deadline,
    accept: str = "application/json",
) -> httpx.Response:
    """GET ``url`` with retries (``deadline.policy``); return a 2xx response or raise ``SourceError``.

    A 4xx other than 408/425/429 is final at once (retrying would not change the answer).
    """
    shown = str(httpx.URL(url, params=params)) if params else url
    attempts = _Attempts(shown, deadline, deadline.policy)
    headers = {"User-Agent": source.user_agent, "Accept": accept}
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            wait=attempts.wait,
            stop=attempts.stop,
            before_sleep=attempts.before_sleep,
            reraise=True,
        ):
            with attempt:
                attempts.count += 1
                if deadline.remaining() <= 0:
                    raise _Transient("deadline reached before the request")
                try:
                    response = await client.get(
                        url, params=params, headers=headers, timeout=timeout_for(source, deadline.remaining())
                    )
                except httpx.TimeoutException as exc:
                    raise attempts.transient(f"timed out ({type(exc).__name__})") from None
                except httpx.TransportError as exc:
                    raise attempts.transient(f"connection failed ({type(exc).__name__}: {exc})") from None
                if response.status_code in RETRY_STATUSES:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    raise attempts.transient(f"HTTP {response.status_code}", retry_after)
                if not response.is_success:
                    raise SourceError(shown, f"HTTP {response.status_code} (not retried)")
                return response
    except _Transient as exc:
        raise SourceError(
            shown, f"gave up after {attempts.count} attempt(s) in {deadline.elapsed():.1f}s: {exc.problem}"
        ) from None
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
