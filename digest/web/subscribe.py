"""Routes of the front page: the subscribe form with its live rule preview, and the double opt-in link."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from digest.addresses import normalize_email
from digest.cleaning import clean_text
from digest.config import Config
from digest.errors import DigestError, SubscriberError
from digest.models import RenderedEmail, Subscriber, SubscriberStatus
from digest.notices import render_confirmation, render_reminder, render_welcome
from digest.store import signup
from digest.store import subscribers as repo
from digest.store.send_slots import set_send_time
from digest.store.subscriber_rows import MAX_NAME_LENGTH
from digest.web.forms import CleanForm
from digest.web.preview import MAX_RULES_TEXT, Preview, RuleProblem, check_rules
from digest.web.sendtime_fields import SendTime, check_fields, choices
from digest.web.site import MAILS_PER_ADDRESS_PER_DAY, Site, SiteDep, path_of

log = logging.getLogger(__name__)
router = APIRouter()

FORM_EXPIRED = "The form had expired or came from another site. Check it and send it again."


class SubscribeForm(CleanForm):
    """The fields of the subscribe form (and of the Preview button's POST)."""

    email: str = ""
    name: str = ""
    rules: str = ""
    send_time: str = ""
    timezone: str = ""
    website: str = ""  # the honeypot: hidden from people, filled by bots
    csrf_token: str = ""

    def values(self) -> dict[str, str]:
        """The form as sent, cut to sane lengths, to show it again."""
        return {
            "email": self.email[:320],
            "name": self.name[:100],
            "rules": self.rules[:MAX_RULES_TEXT],
            "send_time": self.send_time[:5],
            "timezone": self.timezone[:64],
        }


@dataclass(slots=True)
class FormCheck:
    """The subscribe form, checked: the address and rule lines, or what is wrong with them."""

    address: str = ""
    lines: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[RuleProblem] = field(default_factory=list)
    when: SendTime = field(default_factory=lambda: SendTime(None, None))

    @classmethod
    def of(cls, form: SubscribeForm, config: Config) -> FormCheck:
        check = cls()
        try:
            check.when = check_fields(form.send_time, form.timezone, config)
        except SubscriberError as exc:
            check.errors["when"] = str(exc)
        try:
            check.address = normalize_email(form.email)
        except SubscriberError as exc:
            check.errors["email"] = (
                str(exc).split(": ", 1)[-1] if form.email.strip() else "Enter your email address."
            )
        check.lines, check.problems = check_rules(form.rules)
        if not check.lines and not check.problems:
            check.errors["rules"] = "Write at least one rule."
        if len(form.name) > MAX_NAME_LENGTH:
            check.errors["name"] = f"At most {MAX_NAME_LENGTH} characters."
        return check


def subscribe_page(site: Site, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    """The front page. ``context``: ``values`` (the form as sent), ``errors``, ``preview``, ``notice``."""
    page: dict[str, Any] = {
        "form": {"email": "", "name": "", "rules": "", "send_time": "", "timezone": ""},
        "errors": {},
        "preview": Preview.empty(),
        "notice": "",
    }
    if context.get("values"):
        page["form"] = context.pop("values")
    page.update((k, v) for k, v in context.items() if k in page and v)
    form = page["form"]
    page.update(choices(site.config), when_error=page["errors"].get("when", ""))
    # A fresh form lets app.js pre-select the browser's zone; a form sent back keeps what was chosen.
    page["when"] = {
        "send_time": form["send_time"],
        "timezone": form["timezone"],
        "prefill": not form["email"],
    }
    return site.with_csrf(request, lambda token: site.page("index.html", status, csrf_token=token, **page))


@router.get("/", response_class=HTMLResponse)
def index(request: Request, site: SiteDep) -> HTMLResponse:
    site.warn_if_proxied(request)  # the first page a deployment check loads: warn early
    return subscribe_page(site, request)


@router.get("/preview", response_class=HTMLResponse)
def preview_fragment(request: Request, site: SiteDep, rules: str = "") -> HTMLResponse:
    """The preview block alone, for app.js (the page works without it)."""
    wait = site.preview_limiter.hit(site.client_ip(request))
    if wait is not None:
        return HTMLResponse(
            '<p class="muted">Preview paused: too many requests. Try again in a minute.</p>',
            status_code=429,
            headers={"retry-after": str(int(wait))},
        )
    return site.page("_preview.html", preview=site.rule_preview(clean_text(rules)))


@router.post("/preview", response_class=HTMLResponse)
def preview_page(request: Request, site: SiteDep, form: Annotated[SubscribeForm, Form()]) -> HTMLResponse:
    """The Preview button without JavaScript: the same page, the form kept, the preview filled in."""
    wait = site.preview_limiter.hit(site.client_ip(request))
    if wait is not None:
        return subscribe_page(
            site, request, 429, values=form.values(), notice="Too many previews; wait a minute."
        )
    return subscribe_page(site, request, values=form.values(), preview=site.rule_preview(form.rules))


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request, background: BackgroundTasks, site: SiteDep, form: Annotated[SubscribeForm, Form()]
) -> HTMLResponse:
    ip = site.client_ip(request)
    wait = site.subscribe_limiter.hit(ip)
    if wait is not None:
        response = site.message(
            429,
            "Too many requests",
            "Too many subscriptions were sent from your network. Please try again later.",
        )
        response.headers["retry-after"] = str(int(wait))
        return response
    if not site.csrf_ok(request, form.csrf_token):
        return subscribe_page(site, request, 403, values=form.values(), notice=FORM_EXPIRED)
    done = site.page("subscribed.html")
    if form.website.strip():
        log.info("subscribe form with the honeypot filled from %s: ignored", ip)
        return done
    check = FormCheck.of(form, site.config)
    if check.errors or check.problems:
        preview = Preview.empty(check.problems) if check.problems else None
        return subscribe_page(site, request, 400, values=form.values(), errors=check.errors, preview=preview)
    consent = signup.Consent(
        at=site.clock(),
        source="web",
        ip=ip,
        user_agent=request.headers.get("user-agent", "")[:300] or None,
        form={
            "email": check.address,
            "name": form.name.strip(),
            "rules": check.lines,
            "page": request.url.path,
        },
    )
    # Everything that depends on the address (new, pending, active, bounced...) happens after the answer,
    # so the answer does the same work, and takes the same time, whoever the address belongs to.
    background.add_task(_store_and_mail, site, check, form.name, consent)
    return done


class ConfirmForm(CleanForm):
    """The confirmation page's button: only the CSRF token."""

    csrf_token: str = ""


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, site: SiteDep) -> HTMLResponse:
    """The page of the confirmation link: one button. Mail scanners (Safe Links, gateways) fetch every link
    in a mail, so opening the link must not subscribe anyone: only the button's POST does."""
    sub = site.subscriber_from("confirm", token)  # a bad link: TokenError, answered by the app
    return _confirm_page(site, request, sub)


def _confirm_page(
    site: Site, request: Request, sub: Subscriber, status: int = 200, notice: str = ""
) -> HTMLResponse:
    manage_path = path_of(site.links(sub)["manage_url"])
    if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return site.page("confirmed.html", status, sub=sub, already=True, manage_path=manage_path)
    if sub.status != SubscriberStatus.PENDING:
        return _cancelled(site)
    return site.with_csrf(
        request,
        lambda csrf: site.page("confirm.html", status, sub=sub, csrf_token=csrf, notice=notice),
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(
    token: str,
    request: Request,
    background: BackgroundTasks,
    site: SiteDep,
    form: Annotated[ConfirmForm, Form()],
) -> HTMLResponse:
    """The button of the confirmation page: activates the subscription and sends the welcome mail."""
    sub = site.subscriber_from("confirm", token)  # a bad link: TokenError, answered by the app
    if not site.csrf_ok(request, form.csrf_token):
        return _confirm_page(site, request, sub, 403, FORM_EXPIRED)
    links = site.links(sub)
    manage_path = path_of(links["manage_url"])
    if signup.confirm_subscriber(site.engine, sub.id, now=site.clock()):
        active = repo.get_subscriber(site.engine, sub.id) or sub
        mail = render_welcome(site.config, site.secret, active)
        background.add_task(site.send, active, mail, links["unsubscribe_url"], "welcome")
        return site.page("confirmed.html", sub=active, already=False, manage_path=manage_path)
    if sub.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED):
        return site.page("confirmed.html", sub=sub, already=True, manage_path=manage_path)
    return _cancelled(site)


def _cancelled(site: Site) -> HTMLResponse:
    return site.message(
        409,
        "This subscription was cancelled",
        "It was unsubscribed after this link was sent. To subscribe again, use the form on the front page.",
    )


#: The outcomes that stored the form (a pending subscription): its send time goes with it.
_CHANGED = (
    signup.SubscribeOutcome.NEW,
    signup.SubscribeOutcome.PENDING,
    signup.SubscribeOutcome.RESUBSCRIBED,
)


async def _store_and_mail(site: Site, check: FormCheck, name: str, consent: signup.Consent) -> None:
    """After the answer: store the form, then send its mail (confirmation or reminder) if any."""
    try:
        mail = await run_in_threadpool(_store, site, check, name, consent)
    except DigestError as exc:  # a rule the store refuses after all: nothing stored, nothing sent
        log.warning("a subscribe form was not stored: %s", exc)
        return
    if mail is not None:
        await site.send(*mail)


def _store(
    site: Site, check: FormCheck, name: str, consent: signup.Consent
) -> tuple[Subscriber, RenderedEmail, str, str] | None:
    """Store the form; the mail it earns (subscriber, mail, unsubscribe link, kind) within the limits."""
    address, now = check.address, consent.at
    if site.address_mail_limiter.full(address):
        # Checked before anything is stored: a fourth form of the day must not swap a pending
        # subscription's rules (killing the link already mailed) when no new mail can follow.
        log.info("an address had %d mails from the form today: nothing changed", MAILS_PER_ADDRESS_PER_DAY)
        return None
    sub, outcome = signup.request_subscription(
        site.engine, address, check.lines, now=now, name=name or None, consent=consent
    )
    if outcome in (signup.SubscribeOutcome.MANAGED, signup.SubscribeOutcome.BOUNCED):
        return None  # no mail from the form to a config-managed or a bounced address
    if outcome in _CHANGED and check.when.send_time is not None:  # never for someone already subscribed
        sub = set_send_time(site.engine, sub.id, check.when.send_time, check.when.timezone, now)
    if outcome is signup.SubscribeOutcome.TOO_SOON or not signup.record_confirmation_sent(
        site.engine, sub.id, now
    ):
        log.info("subscriber %s asked again too soon: no mail", sub.id)
        return None
    if site.address_mail_limiter.hit(address) is not None:
        log.info("subscriber %s had %d mails from the form today: no mail", sub.id, MAILS_PER_ADDRESS_PER_DAY)
        return None
    # Read it again now that the mail is claimed: a form sent at the same moment may have changed the
    # rules (and the link version) since, and the mail must carry the link that works.
    sub = repo.get_subscriber(site.engine, sub.id) or sub
    unsubscribe = site.links(sub)["unsubscribe_url"]
    if outcome is signup.SubscribeOutcome.ACTIVE:
        return sub, render_reminder(site.config, site.secret, sub), unsubscribe, "reminder"
    return sub, render_confirmation(site.config, site.secret, sub), unsubscribe, "confirmation"
