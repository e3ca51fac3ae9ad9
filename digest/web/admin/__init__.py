"""The operator console at /admin (DESIGN.md section 9; issue 16).

``admin_router`` is the one hook: ``app.include_router(admin_router(config, engine, clock=clock))``.
Without an ``[admin]`` section it has no routes, so every /admin address is the site's 404.
"""

from __future__ import annotations

from fastapi import APIRouter

from digest.clock import Clock, utc_now
from digest.config import Config
from digest.store.db import Engine


def admin_router(config: Config, engine: Engine, *, clock: Clock = utc_now) -> APIRouter:
    """The console's routes under /admin; none at all unless ``[admin]`` is configured.

    Raises ConfigError at start when ``[admin]`` is set but its password hash or the secret key is missing.
    """
    router = APIRouter(prefix="/admin")
    if config.admin is None:
        return router
    from digest.web.admin.actions import Actions
    from digest.web.admin.console import Console
    from digest.web.admin.pages import Pages
    from digest.web.admin.signin import SignIn

    console = Console(config, engine, clock)
    SignIn(console).register(router)
    Pages(console).register(router)
    Actions(console).register(router)
    return router
