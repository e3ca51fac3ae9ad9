"""The console's actions (POST only, CSRF-checked, each behind a confirmation page, each audited):
pause, unsubscribe, reactivate, resend today's digest, delete all data, and the kill switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from digest.errors import SubscriberError
from digest.store import console_subscribers as subs
from digest.store import settings
from digest.store.subscribers import delete_subscriber_data
from digest.web.admin.auth import Session
from digest.web.admin.console import Console
from digest.web.admin.pages import ACTIONS_BY_NAME, Action, expired_notice, subscriber_view

EXPIRED = "The form had expired or came from another page. Nothing was changed; try again."

_RESEND_TEXT = {
    subs.Resend.QUEUED: "Today's digest is back in the outbox: the retry job sends it within minutes "
    "(or run 'digest run' now).",
    subs.Resend.NO_RUN: "Today's run has not started yet: this subscriber is in it when it runs.",
    subs.Resend.NOT_PLANNED: "This subscriber is not in today's run (not active or not due when it was "
    "planned); the next run includes them.",
    subs.Resend.ALREADY: "Today's digest was already sent or is on its way: it is never sent twice.",
    subs.Resend.MAYBE_ARRIVED: "Today's digest is uncertain (the connection dropped after the message was "
    "handed over): it may have arrived, so it is not sent again.",
}


class Actions:
    def __init__(self, console: Console) -> None:
        self.console = console

    def register(self, router: APIRouter) -> None:
        router.add_api_route(
            "/subscribers/{subscriber_id}/{name}", self.act, methods=["POST"], response_class=HTMLResponse
        )
        router.add_api_route("/sending", self.kill_switch, methods=["POST"], response_class=HTMLResponse)

    def _authorised(
        self, request: Request, csrf_token: str, refused: Callable[[Session], Response]
    ) -> Session | Response:
        """The signed-in session when the form's CSRF token is its own; else the answer to send back: the
        login page when signed out, ``refused(session)`` (403, nothing changed) when the token is wrong."""
        console = self.console
        session = console.session(request)
        if session is None:
            return console.to_login(expired_notice(request))
        if not console.sessions.csrf_ok(session, csrf_token):
            return refused(session)
        return session

    def act(
        self,
        request: Request,
        subscriber_id: int,
        name: str,
        csrf_token: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        """One action on one subscriber: a confirmation page first, then (with confirm=yes) the change."""
        console = self.console
        session = self._authorised(
            request,
            csrf_token,
            lambda s: subscriber_view(console, request, s, subscriber_id, 403, error=EXPIRED),
        )
        if isinstance(session, Response):
            return session
        action = ACTIONS_BY_NAME.get(name)
        sub = subs.record(console.engine, subscriber_id)
        if action is None or sub is None:
            return console.page(
                request,
                session,
                "message.html",
                404,
                heading="Not found",
                text="No such subscriber or action.",
            )
        if not action.allowed(sub):
            return self._refuse(request, session, name, sub.id, sub.status)
        if confirm != "yes":
            return console.page(request, session, "confirm.html", action=action, sub=sub)
        if action.change is not None:
            return self._change(request, session, action, sub)
        if name == "resend":
            return self._resend(request, session, sub)
        return self._delete(request, session, sub)

    def _refuse(
        self, request: Request, session: Session, name: str, subscriber_id: int, status: str
    ) -> Response:
        """An action the subscriber's status does not allow: nothing changes; the attempt is audited."""
        target = f"subscriber {subscriber_id}"
        self.console.audit(request, session.username, f"subscriber.{name}", target, f"refused: {status}")
        return subscriber_view(
            self.console, request, session, subscriber_id, 409, error=_refusal(name, status)
        )

    def _change(
        self, request: Request, session: Session, action: Action, sub: subs.SubscriberRecord
    ) -> Response:
        console = self.console
        assert action.change is not None
        if not subs.change_status(console.engine, sub.id, action.change, console.clock()):
            fresh = subs.record(console.engine, sub.id)
            return self._refuse(request, session, action.name, sub.id, fresh.status if fresh else "deleted")
        target = f"subscriber {sub.id} <{sub.email}>"
        console.audit(request, session.username, f"subscriber.{action.name}", target, f"was {sub.status}")
        return subscriber_view(console, request, session, sub.id, notice=f"Done: {action.label.lower()}.")

    def _resend(self, request: Request, session: Session, sub: subs.SubscriberRecord) -> Response:
        console = self.console
        note = f"requeued by {session.username} in the console"
        result = subs.resend(console.engine, sub.id, console.today(), console.clock(), note)
        target = f"subscriber {sub.id} <{sub.email}>"
        console.audit(request, session.username, "subscriber.resend", target, result.value)
        text = _RESEND_TEXT[result]
        if result is subs.Resend.QUEUED:
            return subscriber_view(console, request, session, sub.id, notice=text)
        return subscriber_view(console, request, session, sub.id, 409, error=text)

    def _delete(self, request: Request, session: Session, sub: subs.SubscriberRecord) -> Response:
        console = self.console
        try:
            delete_subscriber_data(console.engine, sub.id, console.clock(), allow_managed=True)
        except SubscriberError as exc:
            return subscriber_view(console, request, session, sub.id, 409, error=str(exc))
        except ValueError:  # a status this version has no name for (e.g. 'complained' before bounce handling)
            return subscriber_view(
                console, request, session, sub.id, 409, error=_refusal("delete", sub.status)
            )
        # The audit names the number only: the address is what was just deleted.
        console.audit(request, session.username, "subscriber.delete", f"subscriber {sub.id}")
        notice = "Every piece of this subscriber's data is deleted."
        return subscriber_view(console, request, session, sub.id, notice=notice)

    def kill_switch(
        self,
        request: Request,
        action: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        """Pause or release all sending (every process), after a confirmation page."""
        console = self.console
        session = self._authorised(
            request,
            csrf_token,
            lambda s: console.page(
                request, s, "message.html", 403, heading="Nothing was changed", text=EXPIRED
            ),
        )
        if isinstance(session, Response):
            return session
        if action not in ("pause", "release"):
            return console.page(
                request, session, "message.html", 400, heading="Unknown action", text="Nothing was changed."
            )
        reason = reason.strip()[:500]
        if confirm != "yes":
            return console.page(request, session, "confirm_sending.html", action=action, reason=reason)
        if action == "pause":
            changed = settings.pause_sending(
                console.engine, by=session.username, reason=reason, now=console.clock()
            )
            text = "Sending is paused: no new message is claimed by any process; messages in flight finish."
        else:
            changed = settings.release_sending(console.engine)
            text = "Sending is released: waiting digests go out with the next run or retry (within minutes)."
        if changed:
            console.audit(request, session.username, f"sending.{action}", None, reason or None)
        else:
            text = "Nothing changed: sending was already " + ("paused." if action == "pause" else "running.")
        return console.page(request, session, "message.html", heading="Kill switch", text=text)


def _refusal(name: str, status: str) -> str:
    if name == "reactivate" and status == "complained":
        return (
            "Refused: this address complained (marked the mail as spam). A complaint is the person saying no; "
            "only they can subscribe again."
        )
    return f"Refused: this cannot be done to a subscriber whose status is '{status}'."
