"""The state behind the console's routes: config, database, clock, sessions, rendering, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from digest.config import Config
from digest.store import audit, settings
from digest.store.db import Engine
from digest.templating import environment
from digest.web.admin.auth import SESSION_COOKIE, LoginGuard, Session, Sessions
from digest.web.security import CSRF_COOKIE, Csrf, client_address

LOGIN_PATH = "/admin/login"


class Console:
    def __init__(self, config: Config, engine: Engine, clock: Callable[[], datetime]) -> None:
        assert config.admin is not None
        self.config = config
        self.admin = config.admin
        self.engine = engine
        self.clock = clock
        secret = config.secret_key()
        password_hash = config.admin_password_hash()
        self.sessions = Sessions(secret, password_hash, timedelta(minutes=config.admin.idle_timeout_minutes))
        self.login_csrf = Csrf(secret)
        self.guard = LoginGuard(engine, config.admin, password_hash)
        self.secure = config.web.base_url.startswith("https://")
        self.env = environment()

    # ---- who is asking

    def client_ip(self, request: Request) -> str:
        web = self.config.web
        return client_address(request, trust_proxy=web.trust_proxy, networks=web.proxy_networks)

    def session(self, request: Request) -> Session | None:
        return self.sessions.load(request.cookies.get(SESSION_COOKIE), self.clock())

    def today(self) -> date:
        return self.clock().astimezone(self.config.schedule.zone).date()

    # ---- answers

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"admin/{name}").render(site_title=self.config.digest.title, **context)
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def page(
        self, request: Request, session: Session, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A signed-in page: the session's CSRF token, the kill-switch banner, a refreshed session cookie."""
        response = self.render(
            name,
            status,
            user=session.username,
            csrf_token=self.sessions.csrf_token(session),
            pause=settings.sending_pause(self.engine),
            path=request.url.path,
            **context,
        )
        self.set_session(response, session)
        return response

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.dump(session, self.clock()),
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/admin",
        )

    def to_login(self, notice: str = "") -> Response:
        response = RedirectResponse(LOGIN_PATH + ("?expired=1" if notice else ""), status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/admin")
        return response

    def login_page(self, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        """The sign-in form with a double-submit CSRF token (there is no session yet)."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = not (16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum())
        if fresh:
            nonce = self.login_csrf.new_nonce()
        context.setdefault("error", "")
        context.setdefault("notice", "")
        context.setdefault("username", "")
        response = self.render("login.html", status, csrf_token=self.login_csrf.token_for(nonce), **context)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, nonce, httponly=True, samesite="lax", secure=self.secure, path="/"
            )
        return response

    def login_csrf_ok(self, request: Request, token: str) -> bool:
        return self.login_csrf.is_valid(request.cookies.get(CSRF_COOKIE), token)

    # ---- the trail

    def audit(
        self, request: Request, actor: str, action: str, target: str | None = None, detail: str | None = None
    ) -> None:
        audit.record(
            self.engine,
            audit.AuditEntry(self.clock(), actor, action, target, detail, self.client_ip(request)),
        )
