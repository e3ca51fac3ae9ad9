"""The service's own mails (confirmation, welcome, already-subscribed reminder, admin alert) and the
URLs of the links every mail carries. Pure: templates in, RenderedEmail out; digest.message makes MIME bytes.

The pipeline uses :func:`manage_url` and :func:`unsubscribe_url` for the digest's footer and its
List-Unsubscribe header, so the web and the mail always agree on the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import escape

from digest.config import Config
from digest.models import Cadence, RenderedEmail, Subscriber
from digest.paperblocks import one_line
from digest.templating import environment
from digest.tokens import make_digest_token, make_token

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def confirm_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The double opt-in link (expires after 3 days)."""
    return f"{config.web.base_url}/confirm/{make_token(secret, 'confirm', sub.id, sub.token_version)}"


def manage_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The manage-preferences page of this subscriber."""
    return f"{config.web.base_url}/manage/{make_token(secret, 'manage', sub.id, sub.token_version)}"


def unsubscribe_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The unsubscribe page and RFC 8058 one-click target (List-Unsubscribe)."""
    return f"{config.web.base_url}/u/{make_token(secret, 'unsubscribe', sub.id, sub.token_version)}"


def digest_url(config: Config, secret: str, sub: Subscriber, day: date) -> str:
    """This subscriber's digest of ``day`` in the browser (the mail's "View in your browser")."""
    return f"{config.web.base_url}/d/{make_digest_token(secret, sub.id, sub.token_version, day)}"


def archive_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The subscriber's past digests."""
    return f"{config.web.base_url}/archive/{make_token(secret, 'archive', sub.id, sub.token_version)}"


def feed_url(config: Config, secret: str, sub: Subscriber) -> str:
    """The subscriber's Atom feed."""
    return f"{config.web.base_url}/feed/{make_token(secret, 'feed', sub.id, sub.token_version)}.atom"


def _render(kind: str, context: dict[str, object]) -> RenderedEmail:
    env = environment()
    subject = one_line(env.get_template(f"email/{kind}.subject.j2").render(**context))
    full = {**context, "subject": subject}
    text = env.get_template(f"email/{kind}.txt.j2").render(**full)
    html = env.get_template(f"email/{kind}.html.j2").render(**full)
    return RenderedEmail(subject=subject, text=text, html=html)


def _common(config: Config, sub: Subscriber) -> dict[str, object]:
    return {
        "title": config.digest.title,
        "postal_address": config.digest.postal_address,
        "email": sub.email,
        # The digest's own filter: no control, bidi override or NUL reaches a mail, whatever stored them.
        "name": one_line(sub.name) if sub.name else "",
        "rules": [one_line(r.query) for r in sub.rules],
    }


def schedule_phrase(cadence: Cadence, weekday: int) -> str:
    """'every day' or 'every Friday'."""
    if cadence == Cadence.WEEKLY:
        return f"every {WEEKDAY_NAMES[weekday % 7]}"
    return "every day"


def render_confirmation(config: Config, secret: str, sub: Subscriber) -> RenderedEmail:
    """The double opt-in mail: the rules asked for, the confirmation link, a link to stop even these mails."""
    return _render(
        "confirm",
        {
            **_common(config, sub),
            "confirm_url": confirm_url(config, secret, sub),
            "unsubscribe_url": unsubscribe_url(config, secret, sub),
        },
    )


def render_welcome(config: Config, secret: str, sub: Subscriber) -> RenderedEmail:
    """Sent once, when the subscription is confirmed: the rules, the schedule, the manage and unsubscribe links."""
    return _render(
        "welcome",
        {
            **_common(config, sub),
            "schedule": schedule_phrase(sub.cadence, sub.weekday),
            "manage_url": manage_url(config, secret, sub),
            "unsubscribe_url": unsubscribe_url(config, secret, sub),
        },
    )


def render_reminder(config: Config, secret: str, sub: Subscriber) -> RenderedEmail:
    """For a subscribe request on an address that is already subscribed: nothing changed, here are your links.

    (The web page answers the same whatever the address, so only the owner of the mailbox learns this.)
    """
    return _render(
        "reminder",
        {
            **_common(config, sub),
            "manage_url": manage_url(config, secret, sub),
            "unsubscribe_url": unsubscribe_url(config, secret, sub),
        },
    )


def render_admin_alert(subject_line: str, detail: str, *, prefix: str = "") -> RenderedEmail:
    """A short plain mail for the operator (admin_email) about a failed run or source.

    The subject is made one line (no header injection from an error text); ``prefix`` goes in front of it.
    """
    subject = one_line(f"{prefix} {subject_line}" if prefix else subject_line)[:200]
    body = detail.replace("\0", "").rstrip() + "\n"
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(subject)}</title></head><body>"
        f'<pre style="white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;">{escape(body)}</pre>'
        "</body></html>\n"
    )
    return RenderedEmail(subject=subject, text=body, html=html)


def rule_lines(text: str) -> Sequence[str]:
    """The rules of a form's textarea: one per line, blank lines dropped."""
    return [line.strip() for line in text.splitlines() if line.strip()]
