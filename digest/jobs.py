"""Scale-out on PostgreSQL with procrastinate: the tasks, the deferrer of `serve`, and `digest worker`.

With ``[workers] enabled`` (PostgreSQL only), ``serve`` sends nothing and fetches nothing itself: at each
scheduled time it queues a job and returns at once (:class:`PlanDeferrer`).

- The ``[schedule] cron`` (its catch-up on start and same-day retry too) queues the *plan* job of the date
  (``run_date`` only; queueing lock ``plan-<date>``). A worker runs the usual ``pipeline.run_digest`` (run
  row, fetch, plan, close, alerts) for everyone who follows the cron and those whose own send time has come
  on that date (``slots.run_audience`` at the job's start): nobody is planned before their hour.
- Each send-time slot queues one plan job per local date that has readers due, with ``run_date`` and the
  slot's quarter hour ``slot_at`` only (never the subscriber ids: an audience of 100k stays a few bytes).
  The worker recomputes the audience from ``slot_at`` (``slots.slot_audience``) and plans exactly those,
  from the stored papers (no fetch), as the inline slot does. Queueing lock ``slot-<date>-<slot_at>``: two
  ``serve`` processes (or a repeated slot) queue that slot once; a deferral after it already ran finds
  nobody left to plan (the outbox key) and does nothing.
- Every plan job of one date takes the lock ``plan-<date>``: they run one after the other, never racing
  for the run row.
- ``[source] refresh`` queues the *refresh* job (queueing lock and lock ``refresh``: one waiting and one
  running at a time), the same ``refresh.refresh_source`` as serve's inline refresh job.

A plan job cuts the due outbox rows into chunks of ``chunk_size`` and each chunk becomes a *delivery* job;
it keeps the run (and its heartbeat) until every chunk job has ended, then closes the run as an inline run
would. A delivery job is ``delivery.Delivery`` restricted to its id range: the one send loop, with its
conditional claim. A worker that dies (SIGKILL, lost machine) stops its heartbeat; any other worker then
retries its jobs (procrastinate's stalled-job recovery, run by every worker every ``stalled_after_s / 2``
seconds). The retried chunk first marks the rows its dead attempt left in ``sending`` as ``uncertain`` (at
most ``pool_size`` of them: only messages in flight are claimed) and sends the rest; nothing is sent twice.

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
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException

from digest import pipeline, slots
from digest.clock import Clock, utc_now
from digest.config import Config
from digest.delivery import Delivery, RunOptions
from digest.errors import DeliveryError, DigestError
from digest.mailer import SmtpPool, SmtpSettings
from digest.models import RunReport, RunStatus
from digest.outgoing import ServiceMail
from digest.refresh import refresh_source
from digest.selection import DeliveryKit
from digest.service import LazyMailer, sync_subscribers
from digest.store import job_queue
from digest.store.db import DatabaseError, Engine

log = logging.getLogger("digest.jobs")

CONTROL_QUEUE = "digest-control"  # plan and refresh jobs
DELIVERY_QUEUE = "digest-delivery"  # delivery chunks
PLAN_TASK, CHUNK_TASK, REFRESH_TASK = "digest.plan", "digest.deliver_chunk", "digest.refresh"
#: The refresh job's queueing lock and lock: one waiting and one running at a time.
REFRESH_LOCK = "refresh"
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
        #: Shared by the chunk jobs this process runs (one run at a time keeps its papers and renderings).
        self._kit: DeliveryKit | None = None
        self.plan = app.task(name=PLAN_TASK, queue=CONTROL_QUEUE)(self._plan)
        self.chunk = app.task(name=CHUNK_TASK, queue=DELIVERY_QUEUE, pass_context=True)(self._chunk)
        self.refresh = app.task(name=REFRESH_TASK, queue=CONTROL_QUEUE, queueing_lock=REFRESH_LOCK)(
            self._refresh
        )

    async def defer_plan(self, run_date: date, slot_at: datetime | None = None) -> int | None:
        """Queue the plan job of ``run_date``: the cron's, or with ``slot_at`` that send-time slot's; the
        job id, or None when the same job is already waiting (deferred once)."""
        day = run_date.isoformat()
        args = {"run_date": day}
        queueing_lock = f"plan-{day}"
        if slot_at is not None:
            at = slots.slot_time(slot_at).isoformat()
            args["slot_at"] = at
            queueing_lock = f"slot-{day}-{at}"
        try:
            # One lock per date for both kinds: the plans of a date run one at a time.
            return await self.plan.configure(lock=f"plan-{day}", queueing_lock=queueing_lock).defer_async(
                **args
            )
        except AlreadyEnqueued:
            return None

    async def defer_refresh(self) -> int | None:
        """Queue the refresh job; None when one is already waiting."""
        try:
            return await self.refresh.configure(lock=REFRESH_LOCK).defer_async()
        except AlreadyEnqueued:
            return None

    def _options(self, day: date, slot_at: str | None) -> RunOptions | None:
        """The run options of a plan job; None when the slot has nobody left to plan."""
        if slot_at is None:  # the cron: fetch; its followers, and those whose own hour has come
            audience = slots.run_audience(self.config, self.engine, day, self.clock())
            return RunOptions(dispatch=self._dispatch, audience=audience)
        audience = slots.slot_audience(self.config, self.engine, datetime.fromisoformat(slot_at), day)
        if not audience:
            return None
        return RunOptions(dispatch=self._dispatch, audience=audience, fetch=False)

    async def _plan(self, run_date: str, slot_at: str | None = None) -> str:
        day = date.fromisoformat(run_date)
        try:
            sync_subscribers(self.config, self.engine)
        except (DigestError, DatabaseError) as exc:
            log.error("could not sync the config subscribers: %s", exc)
        options = self._options(day, slot_at)
        if options is None:  # the same slot deferred again after it ran, or a run planned them
            log.info("slot %s: nobody is left to plan for %s", slot_at, run_date)
            return "nothing due"
        mailer = LazyMailer(self.config)  # only alerts go through it: opened at the first one
        try:
            report = await pipeline.run_digest(
                self.config, self.engine, day, mailer, clock=self.clock, options=options
            )
        finally:
            await mailer.aclose()
        log.info(
            "plan job %s%s: %s for %d subscribers",
            run_date,
            f" (slot {slot_at})" if slot_at else "",
            report.status,
            len(options.audience or ()),
            extra={"run": report.to_json(), "slot_at": slot_at},
        )
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
        if self._kit is None:
            self._kit = DeliveryKit.for_config(self.config, self.engine)
        async with SmtpPool(SmtpSettings.from_config(self.config)) as pool:
            delivery = Delivery(
                self.config,
                self.engine,
                pool,
                report,
                clock=self.clock,
                options=RunOptions(id_range=(first, last), kit=self._kit),
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
    """What `serve` runs when workers are enabled: it queues plan and refresh jobs instead of running them
    (``digest.service.Workers``)."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.jobs = DigestJobs(config, engine, make_app(config))
        self._opened = False
        self._opening = asyncio.Lock()  # the cron, a slot and the refresh may fire at the same moment

    async def _open(self) -> None:
        async with self._opening:
            if not self._opened:
                await self.jobs.app.open_async()
                self._opened = True

    async def __call__(self, run_date: date, slot_at: datetime | None = None) -> RunReport:
        """Defer the plan job of ``run_date`` (the cron's, or the slot's at ``slot_at``) once; the report
        says ``running`` (the workers run it)."""
        await self._open()
        job_id = await self.jobs.defer_plan(run_date, slot_at)
        what = (
            "the plan job"
            if slot_at is None
            else f"the plan job of the {slots.slot_time(slot_at):%H:%M}Z slot"
        )
        if job_id is None:
            log.info("%s for %s is already queued", what, run_date)
        else:
            log.info("deferred %s for %s to the workers (job %d)", what, run_date, job_id)
        return RunReport(run_date=run_date, status=RunStatus.RUNNING)

    async def refresh(self) -> int | None:
        """Defer the refresh job (one waiting at a time); its id, or None when one waits already or the
        database cannot be reached (logged; the next refresh time tries again)."""
        try:
            await self._open()
            job_id = await self.jobs.defer_refresh()
        except ConnectorException as exc:
            log.warning("refresh not queued: the database cannot be used (%s)", exc.__class__.__name__)
            return None
        if job_id is None:
            log.info("the refresh job is already queued")
        else:
            log.info("deferred the refresh job to the workers (job %d)", job_id)
        return job_id

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
