"""Signing in and out of the console (the only console forms a visitor without a session can send)."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.web.admin.console import Console

log = logging.getLogger(__name__)

#: Patched by tests: how a failed login waits before its answer.
sleep = asyncio.sleep


class SignIn:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.css = (resources.files("digest") / "templates" / "admin" / "admin.css").read_bytes()

    def register(self, router: APIRouter) -> None:
        router.add_api_route("/static/admin.css", self.stylesheet, methods=["GET"])
        router.add_api_route("/login", self.form, methods=["GET"], response_class=HTMLResponse)
        router.add_api_route("/login", self.login, methods=["POST"], response_class=HTMLResponse)
        router.add_api_route("/logout", self.logout, methods=["POST"])

    def stylesheet(self) -> Response:
        return Response(
            self.css, media_type="text/css; charset=utf-8", headers={"cache-control": "public, max-age=3600"}
        )

    def form(self, request: Request, expired: str = "") -> Response:
        if self.console.session(request) is not None:
            return RedirectResponse("/admin", status_code=303)
        notice = "You were signed out after a while without activity. Sign in again." if expired else ""
        return self.console.login_page(request, notice=notice)

    async def login(
        self,
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        """Check the name and password (slowed and counted when wrong); a new session when right."""
        console = self.console
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
            plural = "s" if minutes > 1 else ""
            response = console.login_page(
                request,
                429,
                username=username,
                error=f"Too many failed sign-ins. Try again in about {minutes} minute{plural}.",
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

    def logout(self, request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        session = self.console.session(request)
        if session is not None and not self.console.sessions.csrf_ok(session, csrf_token):
            return RedirectResponse("/admin", status_code=303)  # a forged sign-out changes nothing
        if session is not None:
            self.console.audit(request, session.username, "logout")
        return self.console.to_login()
