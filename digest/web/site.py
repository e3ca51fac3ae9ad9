"""The state behind every route (config, database, mailer, clock, limits) and the helpers the routers share:
pages, client addresses, CSRF, the subscriber behind a signed link, and sending a notice."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from digest.config import Config
from digest.errors import TokenError
from digest.mailer import Transport
from digest.models import RenderedEmail, Subscriber
from digest.notices import confirm_url, manage_url, unsubscribe_url
from digest.outgoing import ServiceMail
from digest.store.db import Engine
from digest.store.subscriber_rows import DELETED_DOMAIN
from digest.store.subscribers import get_subscriber
from digest.templating import environment
from digest.tokens import Purpose, read_token
from digest.web.limits import SharedLimit
from digest.web.preview import RulePreview
from digest.web.security import CSRF_COOKIE, Csrf, SlidingWindowLimiter, client_address

log = logging.getLogger(__name__)

#: Mails the subscribe form may trigger per address per day (on top of the store's one per hour).
MAILS_PER_ADDRESS_PER_DAY = 3
PROXY_WARNING = (
    "requests carry X-Forwarded-For but [web] trust_proxy is false: per-IP limits apply to the proxy's "
    "address; set trust_proxy = true behind a reverse proxy"
)
#: Headers a reverse proxy adds: a request carrying one came through a proxy, even from 127.0.0.1.
_PROXY_HEADERS = (
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "forwarded",
    "x-real-ip",
    "via",
)

# The proxy warning is logged once per process, however many apps or requests there are.
_proxy_warned = threading.Event()


#: What the web needs from the mailer: the mailer's Transport (digest.mailer.SmtpPool is one).
MailSender = Transport


def path_of(url: str) -> str:
    """The root-relative path of one of our own links, for pages: every page links within the site it
    was served from (like its form actions and /static), whatever host name the visitor used."""
    return urlsplit(url).path


@dataclass(frozen=True, slots=True)
class Limits:
    """(requests, seconds) per client IP for the subscribe form and the rule preview."""

    subscribe: tuple[int, float] = (10, 3600.0)
    preview: tuple[int, float] = (120, 60.0)


class Site:
    """The state behind the routes: config, database, mailer, clock, limits, caches."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        mailer: MailSender,
        clock: Callable[[], datetime],
        limits: Limits,
    ) -> None:
        self.config = config
        self.engine = engine
        self.mailer = mailer
        self.clock = clock
        #: When this app started: /healthz only judges the scheduled runs due since then.
        self.started_at = clock()
        self.secret = config.secret_key()
        self.csrf = Csrf(self.secret)
        # The subscribe limits live in the database: every process serving the site counts together.
        self.subscribe_limiter = SharedLimit(engine, "subscribe-ip", limits.subscribe, clock, self.secret)
        self.address_mail_limiter = SharedLimit(
            engine, "mail-address", (MAILS_PER_ADDRESS_PER_DAY, 24 * 3600.0), clock, self.secret
        )
        # The preview only costs CPU: per process, in memory.
        self.preview_limiter = SlidingWindowLimiter(*limits.preview)
        self.env = environment()
        self.secure_cookie = config.web.base_url.startswith("https://")
        self.notices = ServiceMail.for_config(config, mailer, clock)  # the one service-mail path
        self.rule_preview = RulePreview(config, engine, clock)

    # ---- pages

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"web/{name}").render(
            site_title=self.config.digest.title,
            postal_address=self.config.digest.postal_address,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def message(self, status: int, heading: str, text: str, **extra: Any) -> HTMLResponse:
        return self.page("message.html", status, heading=heading, text=text, **extra)

    def client_ip(self, request: Request) -> str:
        """The address per-IP limits count (``security.client_address``): the socket peer, or the
        right-most X-Forwarded-For hop that is not a trusted proxy when the connection is from one."""
        if not self.config.web.trust_proxy:
            self.warn_if_proxied(request)
        return client_address(
            request, trust_proxy=self.config.web.trust_proxy, networks=self.config.web.proxy_networks
        )

    def warn_if_proxied(self, request: Request) -> None:
        """Tell the operator, once per process, that every visitor shares the proxy's per-IP limits."""
        if (
            not self.config.web.trust_proxy
            and "x-forwarded-for" in request.headers
            and not _proxy_warned.is_set()
        ):
            _proxy_warned.set()
            log.warning(PROXY_WARNING)

    def is_local(self, request: Request) -> bool:
        """True for a request from this machine that no proxy forwarded (the container's health check).

        Decided from the socket peer (uvicorn does not rewrite it: ``serve`` turns its proxy headers off),
        never from a forwarded address. Any forwarding header (-For, -Host, -Proto, Forwarded, Via...) means
        a proxy is in between; behind a proxy (``trust_proxy``) never: a bare proxy_pass adds no forwarding
        header, so every public request would look local.
        """
        if self.config.web.trust_proxy or any(name in request.headers for name in _PROXY_HEADERS):
            return False
        host = request.client.host if request.client else ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    # ---- CSRF

    def csrf_nonce(self, request: Request) -> tuple[str, bool]:
        """The browser's CSRF nonce, and whether the cookie must be set."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if 16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum():
            return nonce, False
        return self.csrf.new_nonce(), True

    def with_csrf(self, request: Request, render: Callable[[str], HTMLResponse]) -> HTMLResponse:
        nonce, fresh = self.csrf_nonce(request)
        response = render(self.csrf.token_for(nonce))
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                httponly=True,
                samesite="lax",
                secure=self.secure_cookie,
                path="/",
            )
        return response

    def csrf_ok(self, request: Request, token: str) -> bool:
        return self.csrf.is_valid(request.cookies.get(CSRF_COOKIE), token)

    # ---- tokens

    def subscriber_from(self, purpose: Purpose, token: str) -> Subscriber:
        """The subscriber a link is for; TokenError when forged, expired, revoked or deleted."""
        if len(token) > 256:
            raise TokenError("this link is not valid")
        subscriber_id, version = read_token(self.secret, purpose, token)
        sub = get_subscriber(self.engine, subscriber_id)
        if sub is None or sub.email.endswith("@" + DELETED_DOMAIN):
            raise TokenError("this link is no longer valid", "revoked")
        if sub.token_version != version:
            # The subscription changed after this mail was sent (new rules from the form): a newer mail
            # carries the link that works.
            raise TokenError("this link was replaced by a newer one", "replaced")
        return sub

    def token_failure(self, exc: TokenError) -> HTMLResponse:
        if exc.reason == "replaced":
            return self.message(
                410,
                "This link was replaced",
                "Nothing was changed. The subscription was changed after this mail was sent: use the link "
                "in the newest mail, or subscribe again on the front page.",
            )
        if exc.reason == "expired":
            return self.message(
                410,
                "This link has expired",
                "Nothing was changed. Subscribe again on the front page to get a fresh confirmation link.",
            )
        return self.message(
            404,
            "This link is not valid",
            "Nothing was changed. "
            "Check that the whole link was copied from the mail, or subscribe on the front page.",
        )

    # ---- mail

    def links(self, sub: Subscriber) -> dict[str, str]:
        return {
            "confirm_url": confirm_url(self.config, self.secret, sub),
            "manage_url": manage_url(self.config, self.secret, sub),
            "unsubscribe_url": unsubscribe_url(self.config, self.secret, sub),
        }

    async def send(self, sub: Subscriber, rendered: RenderedEmail, unsubscribe: str, kind: str) -> None:
        """Send one notice; every failure is logged (by the service-mail path), none reaches the visitor."""
        try:
            await self.notices.send(sub.email, rendered, unsubscribe, f"{kind} mail to subscriber {sub.id}")
        except Exception:  # a bug in a transport: logged, never the visitor's problem
            log.exception("%s mail to subscriber %s could not be sent", kind, sub.id)


def current_site(request: Request) -> Site:
    """The Site of the app serving ``request`` (set by ``create_app``)."""
    site: Site = request.app.state.site
    return site


#: A route parameter that receives the app's Site.
SiteDep = Annotated[Site, Depends(current_site)]
