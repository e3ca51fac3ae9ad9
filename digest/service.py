"""The run side of `digest serve`: runs digests one at a time and stops them gracefully.

- Each run (scheduled, catch-up or retry) syncs the config subscribers again, opens an SMTP pool and
  calls ``pipeline.run_digest``. A sync that fails (a bad entry, or a database conflict such as another
  process syncing the same subscriber at the same moment) is logged and the run goes on; the next run
  syncs again. SMTP unreachable: the run is recorded as failed and the admin alerted (at most once per
  problem per day). A run that another process holds is logged, not an error (the run row is the lock:
  two ``serve`` processes on one database send every digest once).
- The web app's mails go through :class:`LazyMailer`, one small SMTP pool opened at the first mail.
- With ``[workers] enabled`` the cron, each send-time slot and the source refresh only queue jobs
  (:class:`Workers`, ``digest.jobs.PlanDeferrer``); worker processes run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from digest import pipeline, slots, subscriptions
from digest.channels.post import add_channel_job
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.errors import DeliveryError, DigestError, RunLockedError
from digest.mailer import SendOutcome, SmtpPool, SmtpSettings
from digest.models import RunReport, RunStatus
from digest.outgoing import ServiceMail, alert_admin
from digest.refresh import Refreshed, refresh_source
from digest.scheduler import RETRY_EVERY, add_refresh_job, add_slot_job, build_scheduler
from digest.store import runs
from digest.store.db import DatabaseError, Engine, IntegrityError
from digest.store.run_status import release_runs

# The logger keeps the name operators know from `digest serve`'s logs.
log = logging.getLogger("digest.server")


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
    engine: Engine,
    run_date: date,
    problem: str,
    detail: str,
    *,
    clock: Clock = utc_now,
) -> RunReport:
    """Record the run for ``run_date`` as failed (it could not even start) and alert the admin.

    Takes the run row like any run (a run held by another live process is left alone: status "locked";
    a finished run is not touched). The alert is deduplicated per problem per day; SMTP being what failed,
    only the alert row is written (``/healthz`` shows it).
    """
    report = RunReport(run_date=run_date)
    try:
        claim = runs.claim_run(engine, run_date, clock())
    except RunLockedError as exc:
        report.status, report.error = RunStatus.LOCKED, str(exc)
        return report
    if claim.finished:
        report.status = RunStatus.DONE
        return report
    report.status, report.error = RunStatus.FAILED, detail
    runs.finish_run(engine, claim.id, RunStatus.FAILED, clock(), report=report.to_json())
    log.error("run %s failed: %s", run_date, detail, extra={"run": report.to_json()})
    sender = _Unreachable(DeliveryError(detail))
    await alert_admin(ServiceMail.for_config(config, sender, clock), engine, run_date, problem, detail)
    return report


class Workers(Protocol):
    """Where the service hands its work when ``[workers] enabled`` (``digest.jobs.PlanDeferrer``): each
    call queues a job and returns at once; worker processes run it."""

    async def __call__(self, run_date: date, slot_at: datetime | None = None) -> RunReport:
        """Queue the plan of ``run_date``: the cron's, or the send-time slot's at ``slot_at``."""

    async def refresh(self) -> int | None:
        """Queue the source refresh."""


class DigestService:
    """Runs digests one at a time; knows how to stop them gracefully.

    ``options`` tunes ``pipeline.run_digest`` (retry pacing; tests shorten it); ``stop`` is always the
    service's own event.
    """

    def __init__(
        self,
        config: Config,
        engine: Engine,
        *,
        clock: Clock = utc_now,
        options: pipeline.RunOptions | None = None,
        workers: Workers | None = None,
    ) -> None:
        self.config = config
        #: Set (workers enabled): runs and refreshes are handed to the workers (digest.jobs.PlanDeferrer).
        self.workers = workers
        self.engine = engine
        self.clock = clock
        self.options = options or pipeline.RunOptions()
        self.stop = asyncio.Event()
        self.reports: list[RunReport] = []
        self._lock = asyncio.Lock()
        self._current: asyncio.Task[RunReport] | None = None

    async def run(
        self, run_date: date, audience: frozenset[int] | None = None, *, slot_at: datetime | None = None
    ) -> RunReport | None:
        """Run the digest for ``run_date`` (after any run in progress); None when stopping.

        Without ``audience`` (the cron, its catch-up and retry) the run plans everyone who follows the cron
        and those whose own send time has come on that date; with it (a send-time slot), only those, from
        the stored papers (no fetch). With workers, the plan job is queued instead: the slot's names the
        slot by ``slot_at`` and the worker recomputes that audience.
        """
        async with self._lock:
            if self.stop.is_set():
                log.info("not starting the run for %s: stopping", run_date)
                return None
            options = dataclasses.replace(self.options, stop=self.stop)
            if audience is not None:
                options.audience, options.fetch = audience, False
            elif self.workers is None:  # (a worker computes it when the job starts)
                options.audience = slots.run_audience(self.config, self.engine, run_date, self.clock())
            task = asyncio.ensure_future(self._run(run_date, options, slot_at))
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

    async def refresh(self) -> Refreshed | None:
        """The refresh job: fetch the source on ``[source] refresh``, apart from any send. Alerts go out
        through a pool opened only when there is one to send. With workers, the refresh job is queued
        instead (one waiting at a time) and a worker fetches."""
        if self.workers is not None:
            await self.workers.refresh()
            return None
        mailer = LazyMailer(self.config)
        try:
            service = ServiceMail.for_config(self.config, mailer, self.clock)
            return await refresh_source(self.config, self.engine, service)
        except DatabaseError as exc:
            log.warning("refresh skipped: the database cannot be used (%s)", exc.__class__.__name__)
            return None
        finally:
            await mailer.aclose()

    def busy(self) -> bool:
        """True while a run is in progress in this process (or waiting for the one in progress)."""
        return self._lock.locked()

    def _finished(self, task: asyncio.Task[RunReport]) -> None:
        if self._current is task:
            self._current = None

    async def slot(self) -> list[RunReport]:
        """One send-time slot: a run per local date for the subscribers whose own send time has come and
        who have no digest for that date (skipped while a run is in progress: the next slot catches up)."""
        if self.busy():
            return []
        reports: list[RunReport] = []
        # The slot's quarter hour: the same for every process, so workers' plan jobs are queued once.
        at = slots.slot_time(self.clock())
        for day, audience in slots.slot_audiences(self.config, self.engine, at).items():
            report = await self.run(day, audience, slot_at=at)
            if report is not None:
                reports.append(report)
        return reports

    async def _run(
        self, run_date: date, options: pipeline.RunOptions, slot_at: datetime | None = None
    ) -> RunReport:
        started = time.monotonic()
        log.info("run %s starting", run_date, extra={"run_date": run_date.isoformat()})
        try:
            sync_subscribers(self.config, self.engine)
        except (DigestError, DatabaseError) as exc:
            # The subscribers already in the database still get their digest; the next run syncs again.
            log.error("could not sync the config subscribers: %s", exc)
        try:
            if self.workers is not None:
                report = await self.workers(run_date, slot_at)
            else:
                async with SmtpPool(SmtpSettings.from_config(self.config)) as pool:
                    report = await pipeline.run_digest(
                        self.config, self.engine, run_date, pool, clock=self.clock, options=options
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
            release_runs(self.engine, runs.this_owner(), self.clock(), "stopped (SIGTERM) during the run")
            log.warning("run %s cancelled: the process is stopping", run_date)
            raise
        except Exception as exc:  # a bug: keep serving, tell the admin, let a restart take the run over
            log.exception("run %s crashed", run_date)
            release_runs(self.engine, runs.this_owner(), self.clock(), f"crashed: {exc!r}")
            report = RunReport(run_date=run_date, status=RunStatus.FAILED, error=f"crashed: {exc!r}")
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


async def _alert(config: Config, engine: Engine, day: date, problem: str, detail: str, clock: Clock) -> None:
    """Alert the admin through a fresh pool; with SMTP down only the alert row is written."""
    try:
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            await alert_admin(ServiceMail.for_config(config, pool, clock), engine, day, problem, detail)
    except DeliveryError as exc:
        await alert_admin(
            ServiceMail.for_config(config, _Unreachable(exc), clock), engine, day, problem, detail
        )


def sync_subscribers(config: Config, engine: Engine) -> None:
    """Sync the config's ``[[subscribers]]`` and log the changes; ConfigError for a bad entry.

    A database conflict (IntegrityError: e.g. another process inserted the same subscriber between our
    read and our insert) rolls the sync back whole; it is logged and not raised, so it never stops a
    start or a run: the next run syncs again.
    """
    try:
        result = subscriptions.sync_subscribers(config, engine)
    except IntegrityError as exc:
        log.warning(
            "could not sync the config subscribers (database conflict, retried at the next run): %s",
            str(exc.orig).splitlines()[0] if exc.orig is not None else exc.__class__.__name__,
        )
        return
    _log_sync(result)


def make_scheduler(service: DigestService, *, retry_every: timedelta = RETRY_EVERY) -> AsyncIOScheduler:
    """The scheduler of ``serve``: the daily cron and the same-day retry job, both running ``service``,
    the source refresh job, the send-time slot and the team-chat channel posts."""
    scheduler = build_scheduler(
        service.config,
        service.run,
        clock=service.clock,
        engine=service.engine,
        busy=service.busy,
        retry_every=retry_every,
    )
    add_channel_job(  # [[channels]] with a send time, and their retries (digest/channels/post.py)
        scheduler,
        service.config,
        service.engine,
        lambda day: lambda p, d: _alert(service.config, service.engine, day, p, d, service.clock),
        service.clock,
    )
    add_refresh_job(scheduler, service.config, service.refresh)
    add_slot_job(scheduler, service.slot)
    return scheduler


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
