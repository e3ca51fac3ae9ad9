"""The console's pages (all GET; nothing here changes a subscriber or the outbox): dashboard, subscribers,
a subscriber's record and history, deliveries, feedback, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest.store import audit
from digest.store import console as reads
from digest.store import console_subscribers as subs
from digest.web.admin.chart import build_chart
from digest.web.admin.console import Console

CHART_DAYS = 30
SOURCE_DAYS = 14
PROBLEM_DAYS = 30


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console

    def register(self, router: APIRouter) -> None:
        routes: list[tuple[str, Callable[..., Response]]] = [
            ("", self.dashboard),
            ("/", self.dashboard),
            ("/subscribers", self.subscriber_list),
            ("/subscribers/{subscriber_id}", self.subscriber_page),
            ("/deliveries", self.deliveries),
            ("/feedback", self.feedback),
            ("/audit", self.audit_log),
        ]
        for path, endpoint in routes:
            router.add_api_route(path, endpoint, methods=["GET"], response_class=HTMLResponse)

    def dashboard(self, request: Request) -> Response:
        """Last 30 days, recent runs, alerts, source health, subscriber counts, the kill switch."""
        console = self.console
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        today, now, engine = console.today(), console.clock(), console.engine
        days = reads.daily_counts(
            engine, today - timedelta(days=CHART_DAYS - 1), today, console.config.schedule.zone
        )
        by_hour = reads.active_by_send_hour(engine)
        return console.page(
            request,
            session,
            "dashboard.html",
            chart=build_chart(days),
            today=today,
            runs=reads.recent_runs(engine, today - timedelta(days=2)),
            alerts=reads.open_alerts(engine, now - timedelta(hours=48)),
            source=reads.source_health(engine, today - timedelta(days=SOURCE_DAYS - 1), today),
            by_status=reads.subscriber_counts_by_status(engine),
            by_hour=sorted(by_hour.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)),
            default_time=_default_time(console.config.schedule.cron),
            zone=console.config.schedule.timezone,
        )

    def subscriber_list(
        self,
        request: Request,
        q: str = "",
        status: str = "",
        cadence: str = "",
        rule: str = "",
        page: int = 1,
    ) -> Response:
        console = self.console
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

    def subscriber_page(self, request: Request, subscriber_id: int) -> Response:
        session = self.console.session(request)
        if session is None:
            return self.console.to_login(expired_notice(request))
        return subscriber_view(self.console, request, session, subscriber_id)

    def deliveries(self, request: Request, state: str = "failed") -> Response:
        console = self.console
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

    def feedback(self, request: Request) -> Response:
        session = self.console.session(request)
        if session is None:
            return self.console.to_login(expired_notice(request))
        rows = reads.feedback_rows(self.console.engine)
        return self.console.page(request, session, "feedback.html", rows=rows)

    def audit_log(self, request: Request) -> Response:
        session = self.console.session(request)
        if session is None:
            return self.console.to_login(expired_notice(request))
        entries = audit.recent(self.console.engine, limit=200)
        return self.console.page(request, session, "audit.html", entries=entries)


def _default_time(cron: str) -> str:
    """'07:00' for the schedule's cron '0 7 * * *'; the cron itself when it is not one daily time."""
    fields = cron.split()
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit():
        return f"{fields[1].zfill(2)}:{fields[0].zfill(2)}"
    return cron


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
