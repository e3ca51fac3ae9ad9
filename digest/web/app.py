"""The web app (DESIGN.md section 9): subscribe with double opt-in, manage, one-click unsubscribe, health.

Every page is server-rendered HTML that works without JavaScript; ``app.js`` only makes the rule preview
update as you type. Database calls are synchronous (FastAPI runs ``def`` routes in its thread pool); mail
goes out in a background task after the response, once the database change is committed, so a slow or
failing SMTP server never changes what the visitor sees (a failure is logged) and the answer to
``POST /subscribe`` takes the same time whatever the address.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from importlib import resources
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import BackgroundTasks, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.addresses import normalize_email
from digest.config import Config
from digest.errors import DigestError, RuleError, SubscriberError, TokenError
from digest.message import DkimSigner, build_message
from digest.models import Cadence, RenderedEmail, Rule, Subscriber, SubscriberStatus
from digest.notices import (
    WEEKDAY_NAMES,
    confirm_url,
    manage_url,
    render_confirmation,
    render_reminder,
    render_welcome,
    rule_lines,
    schedule_phrase,
    unsubscribe_url,
)
from digest.rules import BatchMatcher, explain, validate_rules
from digest.store import subscribers as repo
from digest.store.papers import load_papers
from digest.store.tables import alert, run
from digest.templating import environment
from digest.tokens import Purpose, read_token
from digest.web.security import CSRF_COOKIE, Csrf, SecurityHeaders, SlidingWindowLimiter

log = logging.getLogger(__name__)

PREVIEW_DAYS = 7
PREVIEW_SHOWN = 20
PREVIEW_CACHE_S = 60.0
MAX_RULES_TEXT = 12_000
MAX_RULE_LINES = repo.MAX_RULES
#: Mails the subscribe form may trigger per address per day (on top of the store's one per hour).
MAILS_PER_ADDRESS_PER_DAY = 3
PROXY_WARNING = (
    "requests carry X-Forwarded-For but [web] trust_proxy is false: per-IP limits apply to the proxy's "
    "address; set trust_proxy = true behind a reverse proxy"
)
#: Headers a reverse proxy adds: a request carrying one came through a proxy, even from 127.0.0.1.
_PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")

# The proxy warning is logged once per process, however many apps or requests there are.
_proxy_warned = threading.Event()


class MailSender(Protocol):
    """What the web needs from the mailer (digest.mailer.SmtpPool satisfies it)."""

    async def send(self, sender: str, recipient: str, message: bytes) -> object: ...


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One bad line of the rules box, shown inline with a caret."""

    line: int
    problem: str
    rule: str
    caret: str


@dataclass(frozen=True, slots=True)
class PreviewItem:
    title: str
    url: str
    upvotes: int
    day: str
    why: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What the rules in the box matched over the last days (or why they cannot be used)."""

    asked: bool
    problems: list[RuleProblem]
    items: list[PreviewItem]
    total: int
    days: int
    papers_seen: int


def check_rules(text: str) -> tuple[list[str], list[RuleProblem]]:
    """The rule lines of ``text`` and a problem per bad line (every line is checked, not only the first)."""
    if len(text) > MAX_RULES_TEXT:
        return [], [RuleProblem(0, f"too much text: at most {MAX_RULES_TEXT} characters", "", "")]
    lines = list(rule_lines(text))
    problems: list[RuleProblem] = []
    if len(lines) > MAX_RULE_LINES:
        problems.append(RuleProblem(0, f"at most {MAX_RULE_LINES} rules; combine some with OR", "", ""))
    for number, line in enumerate(lines, 1):
        try:
            validate_rules([line])
        except RuleError as exc:
            shown = exc.rule.replace("\t", " ")
            problems.append(RuleProblem(number, exc.problem, shown, " " * exc.position + "^"))
    return lines, problems


class _Site:
    """The state behind the routes: config, database, mailer, clock, limits, caches."""

    def __init__(
        self,
        config: Config,
        engine: sa.Engine,
        mailer: MailSender,
        clock: Callable[[], datetime],
        subscribe_limit: tuple[int, float],
        preview_limit: tuple[int, float],
    ) -> None:
        self.config = config
        self.engine = engine
        self.mailer = mailer
        self.clock = clock
        self.secret = config.secret_key()
        self.csrf = Csrf(self.secret)
        self.subscribe_limiter = SlidingWindowLimiter(*subscribe_limit)
        self.preview_limiter = SlidingWindowLimiter(*preview_limit)
        # In memory (no column for it): the store's hourly lock holds across processes, this daily cap
        # holds per process until a restart. It runs on the app's clock, like the hourly lock.
        self.address_mail_limiter = SlidingWindowLimiter(
            MAILS_PER_ADDRESS_PER_DAY, 24 * 3600.0, clock=lambda: self.clock().timestamp()
        )
        self.env = environment()
        self.secure_cookie = config.web.base_url.startswith("https://")
        self.sender = config.smtp.from_
        self.envelope_sender = parseaddr(config.smtp.from_)[1]
        self.dkim = DkimSigner.from_config(config)
        self._matcher: tuple[float, date, BatchMatcher] | None = None
        self._papers_lock = threading.Lock()
        self._match_lock = threading.Lock()

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
        """The address per-IP limits count: the proxy's last X-Forwarded-For entry when trusted."""
        if not self.config.web.trust_proxy:
            self.warn_if_proxied(request)
        else:
            forwarded = request.headers.get("x-forwarded-for", "")
            # The proxy appends the address it saw: the last entry is the only one we can trust.
            last = forwarded.split(",")[-1].strip()
            if last:
                return last[:64]
        return request.client.host if request.client else "unknown"

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

        Behind a proxy (``trust_proxy``) never: a bare proxy_pass adds no forwarding header, so every public
        request would look local.
        """
        if self.config.web.trust_proxy or any(name in request.headers for name in _PROXY_HEADERS):
            return False
        host = request.client.host if request.client else ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

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
        sub = repo.get_subscriber(self.engine, subscriber_id)
        if sub is None or sub.email.endswith("@" + repo.DELETED_DOMAIN):
            raise TokenError("this link is no longer valid")
        if sub.token_version != version:
            # The subscription changed after this mail was sent (new rules from the form): a newer mail
            # carries the link that works.
            raise TokenError("this link was replaced by a newer one")
        return sub

    def token_failure(self, exc: TokenError) -> HTMLResponse:
        if "replaced" in str(exc):
            return self.message(
                410,
                "This link was replaced",
                "Nothing was changed. The subscription was changed after this mail was sent: use the link "
                "in the newest mail, or subscribe again on the front page.",
            )
        expired = "expired" in str(exc)
        return self.message(
            410 if expired else 404,
            "This link has expired" if expired else "This link is not valid",
            "Nothing was changed. "
            + (
                "Subscribe again on the front page to get a fresh confirmation link."
                if expired
                else "Check that the whole link was copied from the mail, or subscribe on the front page."
            ),
        )

    # ---- preview

    def recent_matcher(self) -> tuple[BatchMatcher, int]:
        """A matcher over the papers of the last PREVIEW_DAYS days, rebuilt at most once a minute.

        Indexing the week's papers costs far more than matching a rule, so every preview shares it.
        """
        today = self.clock().astimezone(self.config.schedule.zone).date()
        with self._papers_lock:
            cached = self._matcher
            if cached and cached[1] == today and time.monotonic() - cached[0] < PREVIEW_CACHE_S:
                return cached[2], len(cached[2].papers)
            papers = load_papers(self.engine, today - timedelta(days=PREVIEW_DAYS - 1), today)
            matcher = BatchMatcher(papers, cache_size=4096)
            self._matcher = (time.monotonic(), today, matcher)
            return matcher, len(papers)

    def preview(self, text: str) -> Preview:
        lines, problems = check_rules(text)
        if problems or not lines:
            return Preview(bool(lines) or bool(problems), problems, [], 0, PREVIEW_DAYS, 0)
        matcher, seen = self.recent_matcher()
        rules = [Rule(query=q) for q in lines]
        with self._match_lock:  # the matcher's memo tables are not meant for concurrent writers
            hits = [matcher.papers[i] for i in matcher.match(rules)]
        # Explaining costs more than matching: explain only the papers shown.
        top = sorted(hits, key=lambda p: (-p.upvotes, p.id))[:PREVIEW_SHOWN]
        items = []
        for paper in top:
            why = [e for e in (explain(paper, r) for r in rules) if e is not None]
            items.append(
                PreviewItem(
                    title=paper.title,
                    url=paper.url,
                    upvotes=paper.upvotes,
                    day=paper.daily_date.strftime("%a %-d %b"),
                    why="; ".join(e.describe() for e in why),
                )
            )
        total = len(hits)
        return Preview(True, [], items, total, PREVIEW_DAYS, seen)

    # ---- mail

    def links(self, sub: Subscriber) -> dict[str, str]:
        return {
            "confirm_url": confirm_url(self.config, self.secret, sub),
            "manage_url": manage_url(self.config, self.secret, sub),
            "unsubscribe_url": unsubscribe_url(self.config, self.secret, sub),
        }

    async def send(self, sub: Subscriber, rendered: RenderedEmail, unsubscribe: str, kind: str) -> None:
        """Build and send one notice; every failure is logged, none reaches the visitor."""
        try:
            message = build_message(
                rendered,
                sender=self.sender,
                recipient=sub.email,
                list_id=self.config.digest.list_id,
                unsubscribe_url=unsubscribe,
                unsubscribe_mailto=self.config.digest.unsubscribe_mailto,
                date=self.clock(),
                dkim=self.dkim,
            )
            outcome = await self.mailer.send(self.envelope_sender, sub.email, message)
        except Exception:
            log.exception("%s mail to subscriber %s could not be sent", kind, sub.id)
            return
        status = getattr(outcome, "status", "sent")
        if status != "sent":
            log.warning(
                "%s mail to subscriber %s not accepted: %s %s",
                kind,
                sub.id,
                status,
                getattr(outcome, "reply", ""),
            )
        else:
            log.info("%s mail sent to subscriber %s", kind, sub.id)


def _path(url: str) -> str:
    """The root-relative path of one of our own links, for pages: every page links within the site it
    was served from (like its form actions and /static), whatever host name the visitor used."""
    return urlsplit(url).path


def _form_values(email: str, name: str, rules: str) -> dict[str, str]:
    return {"email": email[:320], "name": name[:100], "rules": rules[:MAX_RULES_TEXT]}


def create_app(
    config: Config,
    engine: sa.Engine,
    mailer: MailSender,
    *,
    clock: Callable[[], datetime] = utc_now,
    subscribe_limit: tuple[int, float] = (10, 3600.0),
    preview_limit: tuple[int, float] = (120, 60.0),
) -> FastAPI:
    """The FastAPI app. ``subscribe_limit``/``preview_limit``: (requests, seconds) per client IP."""
    site = _Site(config, engine, mailer, clock, subscribe_limit, preview_limit)
    app = FastAPI(title=config.digest.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    static = {
        "style.css": (resources.files("digest") / "templates" / "web" / "style.css").read_bytes(),
        "app.js": (resources.files("digest") / "web" / "static" / "app.js").read_bytes(),
    }
    static_types = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return site.message(404, "Page not found", "There is nothing at this address.")
        if exc.status_code == 405:
            return site.message(405, "Not allowed", "This page does not accept that kind of request.")
        return site.message(exc.status_code, "Something is wrong", str(exc.detail))

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        body = static.get(name)
        if body is None:
            return site.message(404, "Page not found", "There is nothing at this address.")
        return Response(
            body, media_type=static_types[name], headers={"cache-control": "public, max-age=3600"}
        )

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every visit; an empty answer keeps the logs free of 404s.
        return Response(status_code=204, headers={"cache-control": "public, max-age=86400"})

    def subscribe_page(
        request: Request,
        status: int = 200,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        preview: Preview | None = None,
        notice: str = "",
    ) -> HTMLResponse:
        form = values or {"email": "", "name": "", "rules": ""}
        return site.with_csrf(
            request,
            lambda token: site.page(
                "index.html",
                status,
                csrf_token=token,
                form=form,
                errors=errors or {},
                preview=preview or Preview(False, [], [], 0, PREVIEW_DAYS, 0),
                notice=notice,
            ),
        )

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        site.warn_if_proxied(request)  # the first page a deployment check loads: warn early
        return subscribe_page(request)

    @app.get("/preview", response_class=HTMLResponse)
    def preview_fragment(request: Request, rules: str = "") -> HTMLResponse:
        """The preview block alone, for app.js (the page works without it)."""
        wait = site.preview_limiter.hit(site.client_ip(request))
        if wait is not None:
            return HTMLResponse(
                '<p class="muted">Preview paused: too many requests. Try again in a minute.</p>',
                status_code=429,
                headers={"retry-after": str(int(wait))},
            )
        return site.page("_preview.html", preview=site.preview(rules))

    @app.post("/preview", response_class=HTMLResponse)
    def preview_page(
        request: Request,
        email: Annotated[str, Form()] = "",
        name: Annotated[str, Form()] = "",
        rules: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        """The Preview button without JavaScript: the same page, the form kept, the preview filled in."""
        wait = site.preview_limiter.hit(site.client_ip(request))
        values = _form_values(email, name, rules)
        if wait is not None:
            return subscribe_page(request, 429, values=values, notice="Too many previews; wait a minute.")
        return subscribe_page(request, values=values, preview=site.preview(rules))

    @app.post("/subscribe", response_class=HTMLResponse)
    def subscribe(
        request: Request,
        background: BackgroundTasks,
        email: Annotated[str, Form()] = "",
        name: Annotated[str, Form()] = "",
        rules: Annotated[str, Form()] = "",
        website: Annotated[str, Form()] = "",  # the honeypot: hidden from people, filled by bots
        csrf_token: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        ip = site.client_ip(request)
        values = _form_values(email, name, rules)
        wait = site.subscribe_limiter.hit(ip)
        if wait is not None:
            response = site.message(
                429,
                "Too many requests",
                "Too many subscriptions were sent from your network. Please try again later.",
            )
            response.headers["retry-after"] = str(int(wait))
            return response
        if not site.csrf_ok(request, csrf_token):
            return subscribe_page(
                request,
                403,
                values=values,
                notice="The form had expired or came from another site. Check it and send it again.",
            )
        done = site.page("subscribed.html")
        if website.strip():
            log.info("subscribe form with the honeypot filled from %s: ignored", ip)
            return done
        errors: dict[str, str] = {}
        try:
            address = normalize_email(email)
        except SubscriberError as exc:
            address = ""
            errors["email"] = str(exc).split(": ", 1)[-1] if email.strip() else "Enter your email address."
        lines, problems = check_rules(rules)
        if not lines and not problems:
            errors["rules"] = "Write at least one rule."
        if len(name) > repo.MAX_NAME_LENGTH:
            errors["name"] = f"At most {repo.MAX_NAME_LENGTH} characters."
        if errors or problems:
            return subscribe_page(
                request,
                400,
                values=values,
                errors=errors,
                preview=Preview(True, problems, [], 0, PREVIEW_DAYS, 0) if problems else None,
            )
        now = site.clock()
        consent = repo.Consent(
            at=now,
            source="web",
            ip=ip,
            user_agent=request.headers.get("user-agent", "")[:300] or None,
            form={"email": address, "name": name.strip(), "rules": lines, "page": str(request.url.path)},
        )
        if site.address_mail_limiter.full(address):
            # Checked before anything is stored: a fourth form of the day must not swap a pending
            # subscription's rules (killing the link already mailed) when no new mail can follow.
            log.info(
                "an address had %d mails from the form today: nothing changed", MAILS_PER_ADDRESS_PER_DAY
            )
            return done
        try:
            sub, outcome = repo.request_subscription(
                site.engine, address, lines, now=now, name=name or None, consent=consent
            )
        except DigestError as exc:  # a rule the store refuses after all: show it like the others
            return subscribe_page(request, 400, values=values, errors={"rules": str(exc)})
        if outcome is repo.SubscribeOutcome.MANAGED:
            return done
        if outcome is repo.SubscribeOutcome.TOO_SOON or not repo.record_confirmation_sent(
            site.engine, sub.id, now
        ):
            log.info("subscriber %s asked again within the hour: no mail", sub.id)
            return done
        if site.address_mail_limiter.hit(address) is not None:
            log.info(
                "subscriber %s had %d mails from the form today: no mail", sub.id, MAILS_PER_ADDRESS_PER_DAY
            )
            return done
        # Read it again now that the mail is claimed: a form sent at the same moment may have changed the
        # rules (and the link version) since, and the mail must carry the link that works.
        sub = repo.get_subscriber(site.engine, sub.id) or sub
        links = site.links(sub)
        if outcome is repo.SubscribeOutcome.ACTIVE:
            mail = render_reminder(site.config, site.secret, sub)
            background.add_task(site.send, sub, mail, links["unsubscribe_url"], "reminder")
        else:
            mail = render_confirmation(site.config, site.secret, sub)
            background.add_task(site.send, sub, mail, links["unsubscribe_url"], "confirmation")
        return done

    @app.get("/confirm/{token}", response_class=HTMLResponse)
    def confirm(token: str, background: BackgroundTasks) -> HTMLResponse:
        try:
            sub = site.subscriber_from("confirm", token)
        except TokenError as exc:
            return site.token_failure(exc)
        links = site.links(sub)
        if repo.confirm_subscriber(site.engine, sub.id, now=site.clock()):
            active = repo.get_subscriber(site.engine, sub.id) or sub
            mail = render_welcome(site.config, site.secret, active)
            background.add_task(site.send, active, mail, links["unsubscribe_url"], "welcome")
            return site.page(
                "confirmed.html", sub=active, already=False, manage_path=_path(links["manage_url"])
            )
        if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
            return site.page("confirmed.html", sub=sub, already=True, manage_path=_path(links["manage_url"]))
        return site.message(
            409,
            "This subscription was cancelled",
            "It was unsubscribed after this link was sent. To subscribe again, use the form on the front page.",
        )

    def manage_page(request: Request, sub: Subscriber, status: int = 200, **extra: Any) -> HTMLResponse:
        links = site.links(sub)
        context: dict[str, Any] = {
            "sub": sub,
            "rules_text": "\n".join(r.query for r in sub.rules),
            "problems": [],
            "notice": "",
            "error": "",
            "weekdays": list(enumerate(WEEKDAY_NAMES)),
            "schedule": schedule_phrase(sub.cadence, sub.weekday),
            "unsubscribe_url": links["unsubscribe_url"],
            "admin_email": site.config.digest.admin_email or "",
            "page_url": f"/manage/{request.path_params['token']}",
        }
        context.update(extra)
        return site.with_csrf(
            request, lambda token: site.page("manage.html", status, csrf_token=token, **context)
        )

    @app.get("/manage/{token}", response_class=HTMLResponse)
    def manage(request: Request, token: str) -> HTMLResponse:
        try:
            sub = site.subscriber_from("manage", token)
        except TokenError as exc:
            return site.token_failure(exc)
        return manage_page(request, sub)

    @app.post("/manage/{token}", response_class=HTMLResponse)
    def manage_post(
        request: Request,
        token: str,
        action: Annotated[str, Form()] = "",
        rules: Annotated[str, Form()] = "",
        cadence: Annotated[str, Form()] = "daily",
        weekday: Annotated[str, Form()] = "0",
        confirm_delete: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        try:
            sub = site.subscriber_from("manage", token)
        except TokenError as exc:
            return site.token_failure(exc)
        if not site.csrf_ok(request, csrf_token):
            return manage_page(
                request,
                sub,
                403,
                error="The form had expired or came from another site. Nothing was changed; try again.",
            )
        if sub.managed_by_config:
            return manage_page(request, sub, 403)
        now = site.clock()
        try:
            if action == "save":
                lines, problems = check_rules(rules)
                if problems or not lines:
                    return manage_page(
                        request,
                        sub,
                        400,
                        rules_text=rules[:MAX_RULES_TEXT],
                        problems=problems,
                        error="" if lines else "Write at least one rule.",
                    )
                day = int(weekday) if weekday.isdigit() else -1
                if cadence not in ("daily", "weekly") or not 0 <= day <= 6:
                    return manage_page(
                        request, sub, 400, error="Choose daily or weekly and a day of the week."
                    )
                repo.set_rules(site.engine, sub.id, lines, now=now)
                sub = repo.set_cadence(site.engine, sub.id, Cadence(cadence), day, now)
                return manage_page(request, sub, notice="Saved.")
            if action == "pause":
                sub = repo.set_status(site.engine, sub.id, SubscriberStatus.PAUSED, now=now)
                return manage_page(request, sub, notice="Paused: no digest until you resume.")
            if action == "resume":
                sub = repo.set_status(site.engine, sub.id, SubscriberStatus.ACTIVE, now=now)
                return manage_page(request, sub, notice="Resumed: your digest comes again.")
            if action == "delete":
                if confirm_delete != "yes":
                    return manage_page(
                        request, sub, 400, error="Tick the box to confirm that everything should be deleted."
                    )
                repo.delete_subscriber_data(site.engine, sub.id, now)
                return site.message(
                    200,
                    "Your data is deleted",
                    "Your address, name, rules and history are gone, and every link we mailed you no longer works. "
                    "We keep only the date you subscribed and the date you left, as the law asks.",
                )
        except SubscriberError as exc:
            return manage_page(request, sub, 400, error=str(exc))
        return manage_page(request, sub, 400, error="Unknown action.")

    @app.get("/u/{token}", response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        # Link scanners fetch every URL in a mail: this page only shows a button.
        try:
            sub = site.subscriber_from("unsubscribe", token)
        except TokenError as exc:
            return site.token_failure(exc)
        return site.page(
            "unsubscribe.html", sub=sub, done=False, manage_path=_path(site.links(sub)["manage_url"])
        )

    @app.post("/u/{token}", response_class=HTMLResponse)
    def unsubscribe_now(token: str) -> HTMLResponse:
        """RFC 8058 one-click (form or multipart body ``List-Unsubscribe=One-Click``) and the page's button.

        The signed token is the authority, so no cookie or CSRF token is needed and the body is not read;
        always 200 (never a redirect) and idempotent.
        """
        try:
            sub = site.subscriber_from("unsubscribe", token)
        except TokenError as exc:
            return site.token_failure(exc)
        if sub.status != SubscriberStatus.UNSUBSCRIBED:
            sub = repo.set_status(site.engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=site.clock())
            log.info("subscriber %s unsubscribed", sub.id)
        return site.page(
            "unsubscribe.html", sub=sub, done=True, manage_path=_path(site.links(sub)["manage_url"])
        )

    @app.get("/healthz")
    def healthz(request: Request) -> JSONResponse:
        """Always 200. Public callers get states and counts; details (errors, SMTP replies, alert text)
        only go to a caller on this machine (the container's health check, an operator's curl)."""
        return JSONResponse(health(site.engine, site.clock(), details=site.is_local(request)))

    return app


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _counts(report: Any) -> dict[str, int]:
    """The whole-number fields of a run report (sent, failed, ...): never its error text or problems."""
    if not isinstance(report, dict):
        return {}
    return {k: v for k, v in report.items() if isinstance(v, int) and not isinstance(v, bool)}


def health(
    engine: sa.Engine, now: datetime, *, alert_hours: int = 24, details: bool = False
) -> dict[str, Any]:
    """The last run and the alerts of the last ``alert_hours``.

    Without ``details`` (what the public gets): the overall status, the last run's date, status, finish time
    and counts, and each alert's day and problem key. Free text (the run's error, the report's problems, the
    alert detail) can quote SMTP hosts, user names and relay replies, so it is only added with ``details``.
    """
    with engine.connect() as conn:
        last = conn.execute(sa.select(run).order_by(run.c.run_date.desc()).limit(1)).first()
        alerts = conn.execute(
            sa.select(alert.c.day, alert.c.problem, alert.c.detail, alert.c.created_at)
            .where(alert.c.created_at >= now - timedelta(hours=alert_hours))
            .order_by(alert.c.created_at.desc())
            .limit(10)
        ).all()
    last_run: dict[str, Any] | None = None
    if last is not None:
        last_run = {
            "date": _iso(last.run_date),
            "status": last.status,
            "finished_at": _iso(last.finished_at),
            "counts": _counts(last.report),
        }
        if details:
            last_run.update(started_at=_iso(last.started_at), error=last.error, report=last.report)
    alert_list: list[dict[str, Any]] = []
    for a in alerts:
        item: dict[str, Any] = {"day": _iso(a.day), "problem": a.problem}
        if details:
            item.update(detail=a.detail, created_at=_iso(a.created_at))
        alert_list.append(item)
    status = "ok"
    if alert_list or (last_run and last_run["status"] == "failed"):
        status = "alert"
    answer: dict[str, Any] = {"status": status, "last_run": last_run, "alert": alert_list or None}
    if details:
        answer["now"] = now.isoformat()
    return answer
