"""The console's pages: sign in and out, dashboard, subscribers, deliveries, feedback, audit (all GET but
the sign-in and sign-out forms; nothing here changes a subscriber or the outbox)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.store import audit
from digest.store import console as reads
from digest.store import console_subscribers as subs
from digest.web.admin.chart import build_chart
from digest.web.admin.console import Console

log = logging.getLogger(__name__)

CHART_DAYS = 30
SOURCE_DAYS = 14
PROBLEM_DAYS = 30
#: Patched by tests: how a failed login waits before its answer.
sleep = asyncio.sleep


def register(router: APIRouter, console: Console) -> None:
    css = (resources.files("digest") / "templates" / "admin" / "admin.css").read_bytes()

    @router.get("/static/admin.css")
    def stylesheet() -> Response:
        return Response(
            css, media_type="text/css; charset=utf-8", headers={"cache-control": "public, max-age=3600"}
        )

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, expired: str = "") -> Response:
        if console.session(request) is not None:
            return RedirectResponse("/admin", status_code=303)
        notice = "You were signed out after a while without activity. Sign in again." if expired else ""
        return console.login_page(request, notice=notice)

    @router.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        username, password = username[:64], password[:1024]
        if not console.login_csrf_ok(request, csrf_token):
            return console.login_page(
                request, 403, username=username, error="The form had expired. Sign in again."
            )
        ip = console.client_ip(request)
        verdict = await run_in_threadpool(console.guard.check, ip, username, password, console.clock())
        if verdict.locked_for:
            log.warning("console sign-in refused for %s: too many failed attempts", ip)
            minutes = max(1, round(verdict.locked_for / 60))
            response = console.login_page(
                request,
                429,
                username=username,
                error=f"Too many failed sign-ins. Try again in about {minutes} minute{'s' if minutes > 1 else ''}.",
            )
            response.headers["retry-after"] = str(int(verdict.locked_for))
            return response
        if not verdict.ok:
            log.info("console sign-in failed from %s", ip)
            await sleep(verdict.delay)
            return console.login_page(request, 401, username=username, error="Wrong name or password.")
        session = console.sessions.new(username, console.clock())
        await run_in_threadpool(console.audit, request, username, "login")
        done = RedirectResponse("/admin", status_code=303)
        console.set_session(done, session)
        return done

    @router.post("/logout")
    def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        session = console.session(request)
        if session is not None and not console.sessions.csrf_ok(session, csrf_token):
            return RedirectResponse("/admin", status_code=303)  # a forged sign-out changes nothing
        if session is not None:
            console.audit(request, session.username, "logout")
        return console.to_login()

    @router.get("", response_class=HTMLResponse)
    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        today = console.today()
        now = console.clock()
        days = reads.daily_counts(
            console.engine, today - timedelta(days=CHART_DAYS - 1), today, console.config.schedule.zone
        )
        cron = console.config.schedule.cron.split()
        default_time = (
            f"{cron[1].zfill(2)}:{cron[0].zfill(2)}"
            if cron[0].isdigit() and cron[1].isdigit()
            else console.config.schedule.cron
        )
        return console.page(
            request,
            session,
            "dashboard.html",
            chart=build_chart(days),
            today=today,
            runs=reads.recent_runs(console.engine, today - timedelta(days=2)),
            alerts=reads.open_alerts(console.engine, now - timedelta(hours=48)),
            source=reads.source_health(console.engine, today - timedelta(days=SOURCE_DAYS - 1), today),
            by_status=reads.subscriber_counts_by_status(console.engine),
            by_hour=sorted(
                reads.active_by_send_hour(console.engine).items(),
                key=lambda kv: (kv[0] is not None, kv[0] or 0),
            ),
            default_time=default_time,
            zone=console.config.schedule.timezone,
        )

    @router.get("/subscribers", response_class=HTMLResponse)
    def subscriber_list(
        request: Request, q: str = "", status: str = "", cadence: str = "", rule: str = "", page: int = 1
    ) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        query = subs.SearchQuery(q[:320], status[:16], cadence[:8], rule[:200], max(1, min(page, 10**6)))
        found = subs.search(console.engine, query)
        return console.page(
            request,
            session,
            "subscribers.html",
            query=query,
            found=found,
            statuses=subs.statuses(console.engine),
            paging=_paging(query, found.page, found.pages),
        )

    @router.get("/subscribers/{subscriber_id}", response_class=HTMLResponse)
    def subscriber_page(request: Request, subscriber_id: int) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        return subscriber_view(console, request, session, subscriber_id)

    @router.get("/deliveries", response_class=HTMLResponse)
    def deliveries(request: Request, state: str = "failed") -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        state = state if state in reads.PROBLEM_STATES else "failed"
        since = console.today() - timedelta(days=PROBLEM_DAYS)
        return console.page(
            request,
            session,
            "deliveries.html",
            shown=state,
            states=[str(s) for s in reads.PROBLEM_STATES],
            items=reads.problem_deliveries(console.engine, state, since),
            days=PROBLEM_DAYS,
        )

    @router.get("/feedback", response_class=HTMLResponse)
    def feedback(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        return console.page(request, session, "feedback.html", rows=reads.feedback_rows(console.engine))

    @router.get("/audit", response_class=HTMLResponse)
    def audit_log(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        return console.page(request, session, "audit.html", entries=audit.recent(console.engine, limit=200))


def expired_notice(request: Request) -> str:
    """A visitor whose cookie is present but no longer valid is told why they are asked to sign in."""
    return "expired" if "digest_admin" in request.cookies else ""


def subscriber_view(
    console: Console, request: Request, session: Any, subscriber_id: int, status: int = 200, **extra: Any
) -> Response:
    found = subs.record(console.engine, subscriber_id)
    if found is None:
        return console.page(
            request,
            session,
            "message.html",
            404,
            heading="No such subscriber",
            text="There is no subscriber with this number.",
        )
    context: dict[str, Any] = {
        "sub": found,
        "deliveries": reads.deliveries_of(console.engine, subscriber_id),
        "feedback": reads.feedback_rows(console.engine, subscriber_id),
        "actions": [a for a in ACTIONS if a.allowed(found)],
        "today": console.today(),
        "notice": "",
        "error": "",
    }
    context.update(extra)
    return console.page(request, session, "subscriber.html", status, **context)


class Action:
    """One of the subscriber page's buttons."""

    def __init__(
        self, name: str, label: str, explain: str, *, danger: bool = False, change: subs.Change | None = None
    ) -> None:
        self.name = name
        self.label = label
        self.explain = explain
        self.danger = danger
        self.change = change

    def allowed(self, sub: subs.SubscriberRecord) -> bool:
        if sub.deleted:
            return False
        if self.change is not None:
            return subs.allowed(self.change, sub.status)
        return self.name != "resend" or sub.status == "active"


ACTIONS = [
    Action("pause", "Pause", "No digest goes to this address until it is resumed.", change=subs.Change.PAUSE),
    Action(
        "reactivate",
        "Reactivate",
        "The address bounced earlier; digests go to it again from the next run.",
        change=subs.Change.REACTIVATE,
    ),
    Action(
        "resend",
        "Resend today's digest",
        "Today's digest goes out again if it failed or was skipped (never a second copy of one that was sent).",
    ),
    Action(
        "unsubscribe",
        "Unsubscribe",
        "No more digests; the person can subscribe again on the front page.",
        danger=True,
        change=subs.Change.UNSUBSCRIBE,
    ),
    Action(
        "delete",
        "Delete all data",
        "Address, name, rules and history are removed, and every link mailed to this person stops working. This cannot be undone.",
        danger=True,
    ),
]
ACTIONS_BY_NAME = {a.name: a for a in ACTIONS}


def _paging(query: subs.SearchQuery, page: int, pages: int) -> dict[str, str]:
    from urllib.parse import urlencode

    def link(n: int) -> str:
        params = {
            "q": query.address,
            "status": query.status,
            "cadence": query.cadence,
            "rule": query.rule_word,
            "page": str(n),
        }
        return "/admin/subscribers?" + urlencode({k: v for k, v in params.items() if v})

    return {"prev": link(page - 1) if page > 1 else "", "next": link(page + 1) if page < pages else ""}
