"""Routes of the manage page: edit rules and cadence, pause and resume, delete all my data."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from digest.errors import SubscriberError
from digest.models import Cadence, Subscriber, SubscriberStatus
from digest.notices import WEEKDAY_NAMES, schedule_phrase
from digest.store import subscribers as repo
from digest.store.send_slots import set_send_time
from digest.web.forms import CleanForm
from digest.web.more import liked_rules
from digest.web.preview import MAX_RULES_TEXT, check_rules
from digest.web.sendtime_fields import check_fields, choices
from digest.web.site import Site, SiteDep

router = APIRouter()

DELETED_TEXT = (
    "Your address, name, rules and history are gone, and every link we mailed you no longer works. "
    "We keep only the date you subscribed and the date you left, as the law asks."
)


class ManageForm(CleanForm):
    """The fields of the manage form; ``action`` says which button was pressed."""

    action: str = ""
    rules: str = ""
    cadence: str = "daily"
    weekday: str = "0"
    send_time: str = ""
    timezone: str = ""
    confirm_delete: str = ""
    csrf_token: str = ""


def manage_page(
    site: Site, request: Request, sub: Subscriber, status: int = 200, **extra: Any
) -> HTMLResponse:
    """The manage page of ``sub``; ``extra`` overrides the template context (notice, error, ...)."""
    context: dict[str, Any] = {
        "sub": sub,
        "rules_text": "\n".join(r.query for r in sub.rules),
        "problems": [],
        "notice": "",
        "error": "",
        "weekdays": list(enumerate(WEEKDAY_NAMES)),
        "schedule": schedule_phrase(sub.cadence, sub.weekday) + _at(site, sub),
        "unsubscribe_url": site.links(sub)["unsubscribe_url"],
        "admin_email": site.config.digest.admin_email or "",
        "page_url": f"/manage/{request.path_params['token']}",
        "liked": liked_rules(site.engine, sub.rules),
        **choices(site.config),
        "when": {"send_time": sub.send_time, "timezone": sub.timezone, "prefill": False},
        "when_error": "",
    }
    context.update(extra)
    return site.with_csrf(
        request, lambda token: site.page("manage.html", status, csrf_token=token, **context)
    )


def _at(site: Site, sub: Subscriber) -> str:
    if sub.send_time is None:
        return ""
    return f" at {sub.send_time} ({sub.timezone or site.config.schedule.timezone})"


@router.get("/manage/{token}", response_class=HTMLResponse)
def manage(request: Request, token: str, site: SiteDep) -> HTMLResponse:
    sub = site.subscriber_from("manage", token)  # a bad link: TokenError, answered by the app
    return manage_page(site, request, sub)


@router.post("/manage/{token}", response_class=HTMLResponse)
def manage_post(
    request: Request, token: str, site: SiteDep, form: Annotated[ManageForm, Form()]
) -> HTMLResponse:
    sub = site.subscriber_from("manage", token)  # a bad link: TokenError, answered by the app
    if not site.csrf_ok(request, form.csrf_token):
        return manage_page(
            site,
            request,
            sub,
            403,
            error="The form had expired or came from another site. Nothing was changed; try again.",
        )
    if sub.managed_by_config:
        return manage_page(site, request, sub, 403)
    try:
        return _act(site, request, sub, form)
    except SubscriberError as exc:
        return manage_page(site, request, sub, 400, error=str(exc))


def _act(site: Site, request: Request, sub: Subscriber, form: ManageForm) -> HTMLResponse:
    now = site.clock()
    if form.action == "save":
        return _save(site, request, sub, form)
    if form.action == "pause":
        sub = repo.set_status(site.engine, sub.id, SubscriberStatus.PAUSED, now=now)
        return manage_page(site, request, sub, notice="Paused: no digest until you resume.")
    if form.action == "resume":
        sub = repo.set_status(site.engine, sub.id, SubscriberStatus.ACTIVE, now=now)
        return manage_page(site, request, sub, notice="Resumed: your digest comes again.")
    if form.action == "delete":
        if form.confirm_delete != "yes":
            return manage_page(
                site,
                request,
                sub,
                400,
                error="Tick the box to confirm that everything should be deleted.",
                error_field="confirm-delete",
            )
        repo.delete_subscriber_data(site.engine, sub.id, now)
        return site.message(200, "Your data is deleted", DELETED_TEXT)
    return manage_page(site, request, sub, 400, error="Unknown action.")


def _save(site: Site, request: Request, sub: Subscriber, form: ManageForm) -> HTMLResponse:
    lines, problems = check_rules(form.rules)
    if problems or not lines:
        return manage_page(
            site,
            request,
            sub,
            400,
            rules_text=form.rules[:MAX_RULES_TEXT],
            problems=problems,
            error="" if lines or problems else "Write at least one rule.",
            error_field="rules",
        )
    day = int(form.weekday) if form.weekday.isdigit() else -1
    if form.cadence not in ("daily", "weekly") or not 0 <= day <= 6:
        return manage_page(
            site,
            request,
            sub,
            400,
            error="Choose daily or weekly and a day of the week.",
            error_field="cadence-daily",
        )
    try:
        when = check_fields(form.send_time, form.timezone, site.config)
    except SubscriberError as exc:
        return manage_page(site, request, sub, 400, when_error=str(exc))
    now = site.clock()
    repo.set_rules(site.engine, sub.id, lines, now=now)
    repo.set_cadence(site.engine, sub.id, Cadence(form.cadence), day, now)
    sub = set_send_time(site.engine, sub.id, when.send_time, when.timezone, now)
    return manage_page(site, request, sub, notice="Saved.")
