"""Web safety parts: CSRF tokens, in-memory sliding-window limits, security headers."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "digest_csrf"
#: A form left open for a day can still be sent; a stale one is shown again with a fresh token.
CSRF_MAX_AGE_S = 24 * 3600


class Csrf:
    """Signed double-submit: a random nonce in a SameSite cookie, and the same nonce signed in the form.

    A cross-site page can make the browser send the cookie (SameSite=Lax stops most of that already) but
    cannot read it, so it cannot produce the matching signed field; a stolen form field is useless
    without the cookie of the same browser.
    """

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="paper-digest/csrf")

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, nonce: str) -> str:
        """The form field value that goes with the cookie ``nonce``."""
        return str(self._serializer.dumps(nonce))

    def is_valid(self, nonce: str | None, token: str | None) -> bool:
        """True when ``token`` is a fresh signature of ``nonce``."""
        if not nonce or not token or len(token) > 512:
            return False
        try:
            signed = self._serializer.loads(token, max_age=CSRF_MAX_AGE_S)
        except BadSignature:  # includes SignatureExpired
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, nonce)


class SlidingWindowLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key, in memory (one process).

    Memory is bounded: at most ``max_keys`` keys are remembered, the least recently seen go first.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_keys: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def full(self, key: str) -> bool:
        """True when ``key`` has used up its events in the window (nothing is counted)."""
        now = self._clock()
        with self._lock:
            events = self._events.get(key)
            return events is not None and sum(1 for t in events if t > now - self.window_s) >= self.limit

    def hit(self, key: str) -> float | None:
        """Count one event for ``key``; None when allowed, else the seconds to wait before the next one."""
        now = self._clock()
        with self._lock:
            events = self._events.pop(key, None) or deque()
            while events and events[0] <= now - self.window_s:
                events.popleft()
            self._events[key] = events
            if len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            if len(events) >= self.limit:
                return max(1.0, events[0] + self.window_s - now)
            events.append(now)
            return None


SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the tokens in our URLs must not leak to other sites
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=(), camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every response; no-store unless a route set Cache-Control."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def client_address(request: Request, *, trust_proxy: bool, networks: Networks) -> str:
    """The address per-IP limits count: the socket peer, or (with ``trust_proxy``, on a connection from one
    of the trusted proxy ``networks``) the right-most X-Forwarded-For entry that is not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not trust_proxy or not _in(peer, networks):
        return peer[:64]  # anyone can send the header: only our proxy's word counts
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    # Each proxy appends the address it saw: walk back from the right past our own proxies.
    for hop in reversed([h.strip() for h in hops if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer[:64]  # garbage in the chain: count the proxy itself, never a made-up string
        if not _in(hop, networks):
            return hop
    return peer[:64]


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _in(host: str, networks: Networks) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def slash_redirect(app: ASGIApp, request: Request) -> RedirectResponse | None:
    """For ``/manage/x/`` (a route without the slash), a redirect to ``/manage/x``; else None.

    Starlette's own slash redirect is off: it builds an absolute URL from the request's Host header, so a
    forged Host made us point visitors at another site. This one is root-relative, and collapses leading
    slashes so that it can never read as ``//other.host``.
    """
    path = request.url.path
    if not path.endswith("/") or path == "/":
        return None
    target = "/" + path.strip("/")
    router: Router = getattr(app, "router")  # noqa: B009 - FastAPI and Starlette apps both have one
    scope = {**request.scope, "path": target}
    if not any(route.matches(scope)[0] != Match.NONE for route in router.routes):
        return None
    query = request.url.query
    return RedirectResponse(target + (f"?{query}" if query else ""), status_code=307)
