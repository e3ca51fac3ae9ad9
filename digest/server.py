"""`digest serve`: the web app (uvicorn) and the scheduler in one process and one asyncio loop.

- On start: the database is migrated, the config's ``[[subscribers]]`` are synced, and when today's
  scheduled run was missed (the service was down), it runs at once (``schedule.catch_up``).
- Each run (scheduled, catch-up or retry) is :class:`digest.service.DigestService`'s business.
- Same-day retry: every ``scheduler.RETRY_EVERY`` (10 minutes), when today's run ended ``incomplete``,
  ``failed`` or ``interrupted`` and no run is in progress in this process, the run is started again
  (``run_digest`` takes the run row over and resumes it; the row and the conditional claims keep every
  digest to one copy). A ``done`` run is never retried, and nothing is retried before today's fire time.
- SIGTERM / SIGINT: the scheduler takes no new work and the web server stops; the run in progress hands
  no new message to the server, the messages already handed over finish, and claimed but unsent ones go
  back to pending (a restart finishes them). After ``SHUTDOWN_GRACE_S`` the run is cancelled outright; a
  message cancelled inside the SMTP conversation is recorded as uncertain, never resent blindly.
  A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Generator
from datetime import timedelta

import uvicorn
from fastapi import FastAPI

from digest import pipeline
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import ServeError
from digest.inbox import start_receivers
from digest.jobs import PlanDeferrer
from digest.mailer import SmtpSettings
from digest.models import RunReport
from digest.scheduler import RETRY_EVERY, missed_run_date, next_fire_time
from digest.service import DigestService, LazyMailer, make_scheduler, sync_subscribers
from digest.store.db import Engine
from digest.web import create_app

log = logging.getLogger("digest.server")

#: How long a stopping process lets the run in progress finish the messages in flight.
SHUTDOWN_GRACE_S = 5.0
#: How long uvicorn waits for open HTTP connections when stopping.
HTTP_GRACE_S = 2


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` handles SIGTERM/SIGINT for the whole process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket for the web app; ServeError says what to change when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"web.host/web.port: cannot listen on {host}:{port} ({exc.strerror}); "
            "change [web] port or stop the other process"
        ) from None
    # Listening now (not when uvicorn starts) means connections made right after the "serving on" log
    # line wait in the backlog instead of being refused.
    sock.listen(2048)
    return sock


def _route_logs() -> None:
    """Send uvicorn's and APScheduler's logs through the digest handler (JSON off a terminal)."""
    handlers = logging.getLogger("digest").handlers
    for name, level in (("uvicorn", logging.INFO), ("apscheduler", logging.WARNING)):
        logger = logging.getLogger(name)
        if handlers and not logger.handlers:
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = False
        logger.setLevel(level)


def _open(config: Config) -> Engine:
    """The store, migrated and synced with the config's subscribers; the logs routed."""
    engine = pipeline.open_store(config)
    # Fail at start, not at 07:00, when a secret is missing.
    config.secret_key()
    SmtpSettings.from_config(config)
    sync_subscribers(config, engine)
    _route_logs()
    return engine


async def serve(
    config: Config,
    *,
    clock: Clock = utc_now,
    grace_s: float = SHUTDOWN_GRACE_S,
    retry_every: timedelta = RETRY_EVERY,
) -> int:
    """The `digest serve` main coroutine; returns the exit code (0 after a signal).

    ``retry_every``: how often today's unfinished run is retried (tests shorten it).
    """
    engine = _open(config)
    mailer = LazyMailer(config)
    deferrer = PlanDeferrer(config, engine) if config.workers.enabled else None
    service = DigestService(config, engine, clock=clock, workers=deferrer)
    app = create_app(config, engine, mailer, clock=clock)
    sock = listen(config.web.host, config.web.port)
    receivers = await start_receivers(config, engine, clock)  # bounces by LMTP / IMAP, when configured
    server = _http_server(config, app)
    scheduler = make_scheduler(service, retry_every=retry_every)
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if service.stop.is_set():
            log.warning("received %s again: cancelling the run now", name)
            service.cancel()
            return
        log.info("received %s: stopping", name)
        service.stop.set()
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    catch_up: asyncio.Task[RunReport | None] | None = None
    try:
        scheduler.start()
        _log_start(config, sock, clock)
        catch_up = _start_catch_up(service)
        await server.serve(sockets=[sock])
    finally:
        service.stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await service.drain(grace_s)
        if catch_up is not None:
            with contextlib.suppress(BaseException):
                await catch_up
        await receivers.aclose()
        await _aclose(mailer, deferrer)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
        engine.dispose()
        log.info("stopped")
    return 0 if server.started else 1


async def _aclose(*closables: LazyMailer | PlanDeferrer | None) -> None:
    for closable in closables:
        if closable is not None:
            await closable.aclose()


def _http_server(config: Config, app: FastAPI) -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            log_config=None,
            # Access logs would hold the secret tokens of /u/..., /manage/... and /confirm/... URLs.
            access_log=False,
            timeout_graceful_shutdown=HTTP_GRACE_S,
            proxy_headers=False,  # the app reads X-Forwarded-For itself, from trusted proxies only
        )
    )


def _log_start(config: Config, sock: socket.socket, clock: Clock) -> None:
    host, port = sock.getsockname()[:2]
    nxt = next_fire_time(config, clock())
    log.info(
        "serving on http://%s:%s; next run at %s (%s)",
        host,
        port,
        nxt.isoformat() if nxt else "never",
        config.schedule.timezone,
        extra={"host": host, "port": port, "next_run": nxt.isoformat() if nxt else None},
    )


def _start_catch_up(service: DigestService) -> asyncio.Task[RunReport | None] | None:
    """Start today's missed run at once (``schedule.catch_up``); the task, or None when nothing was missed."""
    config = service.config
    if not config.schedule.catch_up:
        return None
    missed = missed_run_date(config, service.engine, service.clock())
    if missed is None:
        return None
    log.info("catching up the missed run for %s", missed, extra={"run_date": missed.isoformat()})
    return asyncio.ensure_future(service.run(missed))


def serve_forever(config: Config) -> int:
    """`digest serve`: run until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
    return asyncio.run(serve(config))
