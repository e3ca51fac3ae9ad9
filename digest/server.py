"""`digest serve`: the web app (uvicorn) and the scheduler in one process and one asyncio loop.

- On start: the database is migrated, the config's ``[[subscribers]]`` are synced, and when today's
  scheduled run was missed (the service was down), it runs at once (``schedule.catch_up``).
- Each run (scheduled, catch-up or retry) syncs the config subscribers again, opens an SMTP pool and
  calls ``pipeline.run_digest``. A sync that fails (a bad entry, or a database conflict such as another
  process syncing the same subscriber at the same moment) is logged and the run goes on; the next run
  syncs again. SMTP unreachable: the run is recorded as failed and the admin alerted (at most once per
  problem per day). A run that another process holds is logged, not an error (the run row is the lock:
  two ``serve`` processes on one database send every digest once).
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
import dataclasses
import logging
import signal
import socket
import time
from collections.abc import Callable, Generator
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from digest import pipeline
from digest.config import Config
from digest.errors import DeliveryError, DigestError, RunLockedError
from digest.inbox import start_receivers
from digest.mailer import SendOutcome, SmtpPool, SmtpSettings
from digest.models import RunReport
from digest.scheduler import RETRY_EVERY, build_scheduler, missed_run_date, next_fire_time
from digest.store import outbox
from digest.store.tables import run
from digest.web import create_app

log = logging.getLogger("digest.server")

Clock = Callable[[], datetime]

#: How long a stopping process lets the run in progress finish the messages in flight.
SHUTDOWN_GRACE_S = 5.0
#: How long uvicorn waits for open HTTP connections when stopping.
HTTP_GRACE_S = 2


class ServeError(DigestError):
    """`digest serve` cannot start (the web address cannot be bound)."""


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class LazyMailer:
    """The web app's mail sender: one small SMTP pool, opened at the first mail and kept for the next.

    A pool that fails as a whole (server unreachable, TLS or AUTH refused) is dropped, so the next mail
    tries a fresh one; the DeliveryError still reaches the caller (the web logs it).
    """

    def __init__(self, config: Config, *, pool_size: int = 1) -> None:
        self.settings = dataclasses.replace(SmtpSettings.from_config(config), pool_size=pool_size)
        self._pool: SmtpPool | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> SmtpPool:
        async with self._lock:
            if self._pool is None:
                pool = SmtpPool(self.settings)
                await pool.__aenter__()
                self._pool = pool
            return self._pool

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        """Send one message; DeliveryError when the server cannot be used at all."""
        pool = await self._get()
        try:
            return await pool.send(sender, recipient, message)
        except DeliveryError:
            await self._drop(pool)
            raise

    async def _drop(self, pool: SmtpPool) -> None:
        async with self._lock:
            if self._pool is pool:
                self._pool = None
        await pool.aclose()

    async def aclose(self) -> None:
        """Close the pool (QUIT its connections)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()


class _Unreachable:
    """A Transport for when SMTP cannot be reached: every send fails, so only the alert row is recorded."""

    def __init__(self, error: DeliveryError) -> None:
        self.error = error

    async def send(self, sender: str, recipient: str, message: bytes) -> SendOutcome:
        raise self.error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


async def record_failed_run(
    config: Config,
    engine: sa.Engine,
    run_date: date,
    problem: str,
    detail: str,
    *,
    transport: Any = None,
    clock: Clock = utc_now,
) -> RunReport:
    """Record the run for ``run_date`` as failed (it could not even start) and alert the admin.

    Takes the run row like any run (a run held by another live process is left alone: status "locked";
    a finished run is not touched). The alert is deduplicated per problem per day; with no working
    ``transport`` only the alert row is written (``/healthz`` shows it).
    """
    report = RunReport(run_date=run_date)
    try:
        claim = outbox.claim_run(engine, run_date, clock())
    except RunLockedError as exc:
        report.status, report.error = "locked", str(exc)
        return report
    if claim.finished:
        report.status = "done"
        return report
    report.status, report.error = "failed", detail
    outbox.finish_run(engine, claim.id, "failed", clock(), error=detail, report=report.to_json())
    log.error("run %s failed: %s", run_date, detail, extra={"run": report.to_json()})
    sender = transport if transport is not None else _Unreachable(DeliveryError(detail))
    await pipeline.alert_admin(config, engine, sender, run_date, problem, detail, clock)
    return report


def release_runs(engine: sa.Engine, owner: str, now: datetime, reason: str) -> int:
    """Mark the runs this process still holds as interrupted, so a restart takes them over at once."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                run.update()
                .where(run.c.owner == owner, run.c.status == "running")
                .values(status="interrupted", error=reason, heartbeat_at=now)
            ).rowcount
        )


class DigestService:
    """Runs digests one at a time; knows how to stop them gracefully.

    ``options`` tunes ``pipeline.run_digest`` (retry pacing; tests shorten it); ``stop`` is always the
    service's own event.
    """

    def __init__(
        self,
        config: Config,
        engine: sa.Engine,
        *,
        clock: Clock = utc_now,
        options: pipeline.RunOptions | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.options = options or pipeline.RunOptions()
        self.stop = asyncio.Event()
        self.reports: list[RunReport] = []
        self._lock = asyncio.Lock()
        self._current: asyncio.Task[RunReport] | None = None

    async def run(self, run_date: date) -> RunReport | None:
        """Run the digest for ``run_date`` (after any run in progress); None when stopping."""
        async with self._lock:
            if self.stop.is_set():
                log.info("not starting the run for %s: stopping", run_date)
                return None
            task = asyncio.ensure_future(self._run(run_date))
            self._current = task
            task.add_done_callback(self._finished)
            try:
                # Shielded: the scheduler cancels its jobs when it shuts down, but the run must get its
                # grace period (see drain) rather than die mid-message.
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled() or self.stop.is_set():
                    return None
                raise

    def busy(self) -> bool:
        """True while a run is in progress in this process (or waiting for the one in progress)."""
        return self._lock.locked()

    def _finished(self, task: asyncio.Task[RunReport]) -> None:
        if self._current is task:
            self._current = None

    async def _run(self, run_date: date) -> RunReport:
        started = time.monotonic()
        log.info("run %s starting", run_date, extra={"run_date": run_date.isoformat()})
        try:
            sync_subscribers(self.config, self.engine)
        except (DigestError, sa.exc.SQLAlchemyError) as exc:
            # The subscribers already in the database still get their digest; the next run syncs again.
            log.error("could not sync the config subscribers: %s", exc)
        try:
            async with SmtpPool(SmtpSettings.from_config(self.config)) as pool:
                report = await pipeline.run_digest(
                    self.config,
                    self.engine,
                    run_date,
                    pool,
                    clock=self.clock,
                    options=dataclasses.replace(self.options, stop=self.stop),
                )
        except DeliveryError as exc:
            report = await record_failed_run(
                self.config,
                self.engine,
                run_date,
                "smtp",
                f"the SMTP server cannot be used: {exc}",
                clock=self.clock,
            )
        except asyncio.CancelledError:
            release_runs(self.engine, outbox.this_owner(), self.clock(), "stopped (SIGTERM) during the run")
            log.warning("run %s cancelled: the process is stopping", run_date)
            raise
        except Exception as exc:  # a bug: keep serving, tell the admin, let a restart take the run over
            log.exception("run %s crashed", run_date)
            release_runs(self.engine, outbox.this_owner(), self.clock(), f"crashed: {exc!r}")
            report = RunReport(run_date=run_date, status="failed", error=f"crashed: {exc!r}")
            await _alert(self.config, self.engine, run_date, "crash", report.error or "", self.clock)
        if report.status == "locked":
            log.info("run %s: %s", run_date, report.error, extra={"run": report.to_json()})
        log.info(
            "run %s finished: %s in %.1f s",
            run_date,
            report.status,
            time.monotonic() - started,
            extra={"run": report.to_json()},
        )
        self.reports.append(report)
        return report

    async def drain(self, grace_s: float) -> None:
        """Stop: no new run starts; the current one gets ``grace_s`` seconds, then it is cancelled."""
        self.stop.set()
        task = self._current
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            log.warning("the run did not stop within %.0f s: cancelling it", grace_s)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def cancel(self) -> None:
        """Cancel the run in progress now (a second signal)."""
        if self._current is not None:
            self._current.cancel()


async def _alert(
    config: Config, engine: sa.Engine, day: date, problem: str, detail: str, clock: Clock
) -> None:
    """Alert the admin through a fresh pool; with SMTP down only the alert row is written."""
    try:
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            await pipeline.alert_admin(config, engine, pool, day, problem, detail, clock)
    except DeliveryError as exc:
        await pipeline.alert_admin(config, engine, _Unreachable(exc), day, problem, detail, clock)


def sync_subscribers(config: Config, engine: sa.Engine) -> None:
    """Sync the config's ``[[subscribers]]`` and log the changes; ConfigError for a bad entry.

    A database conflict (IntegrityError: e.g. another process inserted the same subscriber between our
    read and our insert) rolls the sync back whole; it is logged and not raised, so it never stops a
    start or a run: the next run syncs again.
    """
    try:
        result = pipeline.sync_subscribers(config, engine)
    except sa.exc.IntegrityError as exc:
        log.warning(
            "could not sync the config subscribers (database conflict, retried at the next run): %s",
            str(exc.orig).splitlines()[0] if exc.orig is not None else exc.__class__.__name__,
        )
        return
    _log_sync(result)


def make_scheduler(service: DigestService, *, retry_every: timedelta = RETRY_EVERY) -> AsyncIOScheduler:
    """The scheduler of ``serve``: the daily cron and the same-day retry job, both running ``service``."""
    return build_scheduler(
        service.config,
        service.run,
        clock=service.clock,
        engine=service.engine,
        busy=service.busy,
        retry_every=retry_every,
    )


def _log_sync(result: Any) -> None:
    changes = {
        k: list(getattr(result, k, []))
        for k in ("created", "updated", "adopted", "unsubscribed")
        if getattr(result, k, None)
    }
    if changes:
        log.info("config subscribers synced: %s", changes, extra={"sync": changes})
    for key, why in (("kept_unsubscribed", "unsubscribed themselves"), ("kept_bounced", "bounced")):
        kept = list(getattr(result, key, None) or [])
        if kept:
            # The file lists them but they get no mail: the operator should know, and remove them.
            log.warning("config subscribers that %s and stay so (remove them from the config): %s", why, kept)


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
    engine = pipeline.open_store(config)
    # Fail at start, not at 07:00, when a secret is missing.
    config.secret_key()
    SmtpSettings.from_config(config)
    sync_subscribers(config, engine)
    _route_logs()

    mailer = LazyMailer(config)
    service = DigestService(config, engine, clock=clock)
    app = create_app(config, engine, mailer, clock=clock)
    sock = listen(config.web.host, config.web.port)
    receivers = await start_receivers(config, engine, clock)  # bounces by LMTP / IMAP, when configured
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            # Access logs would hold the secret tokens of /u/..., /manage/... and /confirm/... URLs.
            access_log=False,
            timeout_graceful_shutdown=HTTP_GRACE_S,
            proxy_headers=config.web.trust_proxy,
        )
    )
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
        if config.schedule.catch_up:
            missed = missed_run_date(config, engine, clock())
            if missed is not None:
                log.info("catching up the missed run for %s", missed, extra={"run_date": missed.isoformat()})
                catch_up = asyncio.ensure_future(service.run(missed))
        await server.serve(sockets=[sock])
    finally:
        service.stop.set()
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await service.drain(grace_s)
        if catch_up is not None:
            with contextlib.suppress(BaseException):
                await catch_up
        await mailer.aclose()
        await receivers.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
        engine.dispose()
        log.info("stopped")
    return 0 if server.started else 1


def serve_forever(config: Config) -> int:
    """`digest serve`: run until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
    return asyncio.run(serve(config))
