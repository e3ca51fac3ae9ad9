"""Scale-out on PostgreSQL with procrastinate: the tasks, the deferrer of `serve`, and `digest worker`.

With ``[workers] enabled`` (PostgreSQL only), ``serve`` does not run a digest itself: it defers a *plan* job
for the date (queueing lock and lock per date: deferred once, run once at a time). A worker runs it: the
usual ``pipeline.run_digest`` (run row, fetch, plan, close, alerts), except that the due outbox rows are
cut into chunks of ``chunk_size`` and each chunk becomes a *delivery* job; the plan job keeps the run (and
its heartbeat) until every chunk job has ended, then closes the run as an inline run would.

A delivery job is ``delivery.Delivery`` restricted to its id range: the one send loop, with its conditional
claim. A worker that dies (SIGKILL, lost machine) stops its heartbeat; any other worker then retries its
jobs (procrastinate's stalled-job recovery, run by every worker every ``stalled_after_s / 2`` seconds). The
retried chunk first marks the rows its dead attempt left in ``sending`` as ``uncertain`` (at most
``pool_size`` of them: only messages in flight are claimed) and sends the rest; nothing is sent twice.

Plan and refresh jobs run on their own queue, so a worker busy with chunks still runs them (and a plan job
waiting for its chunks never takes the place of a chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from digest import pipeline
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.delivery import Delivery, RunOptions
from digest.errors import DeliveryError, DigestError
from digest.mailer import SmtpPool, SmtpSettings
from digest.models import RunReport, RunStatus
from digest.outgoing import ServiceMail
from digest.refresh import refresh_source
from digest.service import LazyMailer, sync_subscribers
from digest.store import job_queue
from digest.store.db import DatabaseError, Engine

log = logging.getLogger("digest.jobs")

CONTROL_QUEUE = "digest-control"  # plan and refresh jobs
DELIVERY_QUEUE = "digest-delivery"  # delivery chunks
PLAN_TASK, CHUNK_TASK, REFRESH_TASK = "digest.plan", "digest.deliver_chunk", "digest.refresh"
#: How often a plan job looks whether its chunk jobs have ended.
CHUNK_POLL_S = 0.5


def make_app(config: Config) -> procrastinate.App:
    """The procrastinate App on the configured PostgreSQL (not opened)."""
    url = job_queue.libpq_url(config.database_url)
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))


class DigestJobs:
    """The digest's tasks on one App, for one config and database."""

    def __init__(
        self, config: Config, engine: Engine, app: procrastinate.App, *, clock: Clock = utc_now
    ) -> None:
        self.config, self.engine, self.app, self.clock = config, engine, app, clock
        self.plan = app.task(name=PLAN_TASK, queue=CONTROL_QUEUE)(self._plan)
        self.chunk = app.task(name=CHUNK_TASK, queue=DELIVERY_QUEUE, pass_context=True)(self._chunk)
        self.refresh = app.task(name=REFRESH_TASK, queue=CONTROL_QUEUE, queueing_lock="refresh")(
            self._refresh
        )

    async def defer_plan(self, run_date: date) -> int | None:
        """Queue the plan job of ``run_date``; None when one is already waiting (deferred once)."""
        key = f"plan-{run_date.isoformat()}"
        try:
            return await self.plan.configure(lock=key, queueing_lock=key).defer_async(
                run_date=run_date.isoformat()
            )
        except AlreadyEnqueued:
            return None

    async def _plan(self, run_date: str) -> str:
        day = date.fromisoformat(run_date)
        try:
            sync_subscribers(self.config, self.engine)
        except (DigestError, DatabaseError) as exc:
            log.error("could not sync the config subscribers: %s", exc)
        mailer = LazyMailer(self.config)  # only alerts go through it: opened at the first one
        try:
            options = RunOptions(dispatch=self._dispatch)
            report = await pipeline.run_digest(
                self.config, self.engine, day, mailer, clock=self.clock, options=options
            )
        finally:
            await mailer.aclose()
        log.info("plan job %s: %s", run_date, report.status, extra={"run": report.to_json()})
        return str(report.status)

    async def _dispatch(self, run_ids: Sequence[int], run_date: date) -> None:
        """One delivery job per chunk of due rows; returns when they have all ended."""
        bounds = job_queue.chunk_bounds(self.engine, run_ids, self.config.workers.chunk_size)
        job_ids: list[int] = []
        for first, last in bounds:
            key = f"chunk-{min(run_ids)}-{first}-{last}"
            with contextlib.suppress(AlreadyEnqueued):  # a retried plan: that chunk waits already
                job_ids.append(
                    await self.chunk.configure(queueing_lock=key).defer_async(
                        run_ids=list(run_ids), run_date=run_date.isoformat(), first=first, last=last
                    )
                )
        log.info("deferred %d delivery jobs for %s", len(job_ids), run_date)
        while True:
            waiting, failed = job_queue.open_jobs(self.engine, job_ids)
            if not waiting:
                break
            await asyncio.sleep(CHUNK_POLL_S)
        if failed:
            raise DeliveryError(f"{failed} of {len(job_ids)} delivery jobs failed (see the worker logs)")

    async def _chunk(
        self, context: procrastinate.JobContext, run_ids: list[int], run_date: str, first: int, last: int
    ) -> int:
        if context.job.attempts:  # a retry: the attempt before died (its worker stalled)
            stranded = job_queue.strand_in_flight(self.engine, run_ids, (first, last), self.clock())
            if stranded:
                log.warning("%d messages of a dead worker's chunk are uncertain (not resent)", stranded)
        day = date.fromisoformat(run_date)
        report = RunReport(run_date=day)
        async with SmtpPool(SmtpSettings.from_config(self.config)) as pool:
            delivery = Delivery(
                self.config,
                self.engine,
                pool,
                report,
                clock=self.clock,
                options=RunOptions(id_range=(first, last)),
            )
            await delivery.deliver(run_ids, day)
        return report.bounced

    async def _refresh(self) -> int:
        # The same refresh as serve's refresh job (digest.refresh): catch-up, anomalies, admin alerts.
        mailer = LazyMailer(self.config)  # only alerts go through it: opened at the first one
        try:
            service = ServiceMail.for_config(self.config, mailer, self.clock)
            done = await refresh_source(self.config, self.engine, service)
        finally:
            await mailer.aclose()
        return len(done.papers) if done is not None else 0


class PlanDeferrer:
    """What `serve` runs at each scheduled time when workers are enabled: defer the date's plan job."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.jobs = DigestJobs(config, engine, make_app(config))
        self._opened = False

    async def __call__(self, run_date: date) -> RunReport:
        """Defer the plan job of ``run_date`` (once); the report says ``running`` (the workers run it)."""
        if not self._opened:
            await self.jobs.app.open_async()
            self._opened = True
        job_id = await self.jobs.defer_plan(run_date)
        if job_id is None:
            log.info("the plan job for %s is already queued", run_date)
        else:
            log.info("deferred the plan job for %s to the workers (job %d)", run_date, job_id)
        return RunReport(run_date=run_date, status=RunStatus.RUNNING)

    async def aclose(self) -> None:
        """Close the App's connection pool."""
        if self._opened:
            await self.jobs.app.close_async()
            self._opened = False


async def retry_stalled(app: procrastinate.App, stalled_after_s: float) -> None:
    """Forever: the jobs of workers silent for ``stalled_after_s`` go back to the queue (retried)."""
    while True:
        try:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s):
                try:
                    await app.job_manager.retry_job(job)
                    log.warning("job %s (%s) of a dead worker is retried", job.id, job.task_name)
                except Exception as exc:  # another worker retried it first
                    log.debug("job %s not retried: %s", job.id, exc)
        except Exception as exc:  # a busy or restarting database: look again later
            log.warning("could not look for stalled jobs: %s", exc)
        await asyncio.sleep(stalled_after_s / 2)


async def run_worker(config: Config, concurrency: int, *, clock: Clock = utc_now) -> int:
    """`digest worker`: run plan, refresh and delivery jobs until SIGTERM/SIGINT; the exit code."""
    engine = pipeline.open_store(config)
    jobs = DigestJobs(config, engine, make_app(config), clock=clock)
    stalled = config.workers.stalled_after_s
    options: dict[str, Any] = {
        "install_signal_handlers": False,  # ours stop both workers at once
        "update_heartbeat_interval": stalled / 4,
        "stalled_worker_timeout": stalled,
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with jobs.app.open_async():
        tasks = [
            asyncio.ensure_future(
                jobs.app.run_worker_async(queues=[CONTROL_QUEUE], concurrency=2, name="control", **options)
            ),
            asyncio.ensure_future(
                jobs.app.run_worker_async(
                    queues=[DELIVERY_QUEUE], concurrency=concurrency, name="delivery", **options
                )
            ),
            asyncio.ensure_future(retry_stalled(jobs.app, stalled)),
        ]
        log.info("worker started (delivery concurrency %d)", concurrency, extra={"started_at": _iso(clock())})
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:  # procrastinate stops gracefully: running jobs finish first
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopping.cancel()
    engine.dispose()
    failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)]
    for exc in failed:
        log.error("worker stopped on an error: %r", exc)
    log.info("worker stopped")
    return 1 if failed else 0


def _iso(at: datetime) -> str:
    return at.isoformat()


def worker_forever(config: Config, concurrency: int) -> int:
    """Run ``run_worker`` in a new event loop."""
    return asyncio.run(run_worker(config, concurrency))
