"""The web app (DESIGN.md section 9): wiring only. One router per area: subscribe (with the rule preview
and the confirmation link), manage, unsubscribe, health; the state they share lives in ``site``.

Every page is server-rendered HTML that works without JavaScript; ``app.js`` only makes the rule preview
update as you type. Database calls are synchronous (FastAPI runs ``def`` routes in its thread pool); mail
goes out in a background task after the response, once the database change is committed, so a slow or
failing SMTP server never changes what the visitor sees (a failure is logged) and the answer to
``POST /subscribe`` takes the same time whatever the address.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from digest.clock import utc_now
from digest.config import Config
from digest.errors import TokenError
from digest.store.db import Engine
from digest.web import archive, feeds, health, manage, more, subscribe, unsubscribe
from digest.web.admin import admin_router
from digest.web.guard import BodyGuard
from digest.web.security import SecurityHeaders, slash_redirect
from digest.web.site import Limits, MailSender, Site
from digest.web.webhooks import webhooks_router


class _App(FastAPI):
    """FastAPI with the security headers and the body guard OUTSIDE Starlette's error middleware, so a
    500 carries the same headers as every other page and a big body is refused before anything reads it."""

    def build_middleware_stack(self) -> ASGIApp:
        site: Site = self.state.site
        return SecurityHeaders(BodyGuard(super().build_middleware_stack(), site.message))


_STATIC_TYPES = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}


def create_app(
    config: Config,
    engine: Engine,
    mailer: MailSender,
    *,
    clock: Callable[[], datetime] = utc_now,
    subscribe_limit: tuple[int, float] = (10, 3600.0),
    preview_limit: tuple[int, float] = (120, 60.0),
) -> FastAPI:
    """The FastAPI app. ``subscribe_limit``/``preview_limit``: (requests, seconds) per client IP."""
    site = Site(config, engine, mailer, clock, Limits(subscribe_limit, preview_limit))
    app = _App(
        title=config.digest.title, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    app.state.site = site
    _add_site_routes(app, site)
    for area in (subscribe, manage, unsubscribe, health, more):
        app.include_router(area.router)
    app.include_router(archive.router(config, engine))  # GET /d/{token}, GET /archive/{token}
    app.include_router(feeds.router(config, engine, clock=clock))  # GET /feed/{token}.atom
    app.include_router(webhooks_router(config, engine, clock))  # POST /webhooks/bounce
    app.include_router(admin_router(config, engine, clock=clock))  # /admin, a 404 without [admin]
    return app


def _add_site_routes(app: FastAPI, site: Site) -> None:
    """Error pages (a bad signed link included), static files and the favicon."""
    static = {
        "style.css": (resources.files("digest") / "templates" / "web" / "style.css").read_bytes(),
        "app.js": (resources.files("digest") / "web" / "static" / "app.js").read_bytes(),
    }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return slash_redirect(app, request) or site.message(
                404, "Page not found", "There is nothing at this address."
            )
        if exc.status_code == 405:
            return site.message(405, "Not allowed", "This page does not accept that kind of request.")
        return site.message(exc.status_code, "Something is wrong", str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(_request: Request, _exc: Exception) -> Response:
        # Logged by the server; the visitor gets the site's page, never a traceback.
        return site.message(500, "Something went wrong", "Nothing was lost. Please try again later.")

    @app.exception_handler(TokenError)
    async def bad_link(_request: Request, exc: TokenError) -> Response:
        # Every route that reads a signed link answers a bad one the same way; nothing was changed.
        return site.token_failure(exc)

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        body = static.get(name)
        if body is None:
            return site.message(404, "Page not found", "There is nothing at this address.")
        return Response(
            body, media_type=_STATIC_TYPES[name], headers={"cache-control": "public, max-age=3600"}
        )

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # Browsers ask for it on every visit; an empty answer keeps the logs free of 404s.
        return Response(status_code=204, headers={"cache-control": "public, max-age=86400"})
