"""One digest run for a date, end to end: fetch, plan, deliver, report. Orchestration only.

Idempotent: the ``run`` row for the date is the lock, the outbox rows are written before any send, each row
is claimed with a conditional update, and ``sent`` is recorded with the papers it carried in one transaction.
A rerun of a finished date sends nothing; a rerun of a crashed date finishes what is left.

Who gets what is ``digest.planning``; a message is ``digest.compose``; the send loop is ``digest.delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from digest.channels.post import post_channels
from digest.clock import Clock, utc_now
from digest.compose import Composer
from digest.config import Config
from digest.delivery import Delivery, Progress, RunOptions
from digest.errors import DeliveryError, RunLockedError, SourceError, StoreError, SubscriberError
from digest.mailer import FileTransport, SmtpPool, SmtpSettings, Transport
from digest.models import DeliveryState, RunReport, RunStatus
from digest.outgoing import ServiceMail, alert_admin, envelope_sender
from digest.planning import (
    Unplanned,
    due_subscribers,
    fetch_and_store,
    fetch_cadence,
    plan_day,
    plan_outbox,
    plan_subscriber,
    refresh_window,
    stored_papers,
    unplanned,
)
from digest.refresh import alert_anomalies
from digest.store import db, job_queue, outbox, planning, runs
from digest.store.db import Engine
from digest.store.settings import sending_pause
from digest.store.subscribers import find_subscriber
from digest.subscriptions import check_config_subscribers, sync_subscribers

__all__ = [
    "RunOptions",
    "dry_run_digest",
    "fetch_and_store",
    "open_store",
    "preview_digest",
    "run_digest",
    "run_from_cli",
    "stored_papers",
    "sync_subscribers",
]

log = logging.getLogger("digest.pipeline")

#: How often a run writes its heartbeat (a run silent for runs.STALE_AFTER is taken for dead).
HEARTBEAT_S = 20.0
_UNFINISHED = (DeliveryState.PENDING, DeliveryState.RETRY, DeliveryState.SENDING)


def open_store(config: Config) -> Engine:
    """The database of the config, migrated to the newest schema (with procrastinate's when workers are on)."""
    engine = db.open_database(config.database_url)
    if config.workers.enabled:
        job_queue.ensure_schema(engine)
    return engine


@dataclass
class _Run:
    """One claimed run: what every step of it needs."""

    config: Config
    engine: Engine
    run_date: date
    transport: Transport
    clock: Clock
    options: RunOptions
    claim: runs.RunClaim
    owner: str
    report: RunReport
    started: float = field(default_factory=time.monotonic)
    #: Who had no digest for the date when the run was claimed (one scan of the list, read by every step).
    todo: Unplanned = field(default_factory=Unplanned)

    async def alert(self, problem: str, detail: str) -> None:
        service = ServiceMail.for_config(self.config, self.transport, self.clock)
        await alert_admin(service, self.engine, self.run_date, problem, detail)

    def finish(self, status: RunStatus, error: str | None = None) -> RunReport:
        report = self.report
        report.status, report.seconds = status, time.monotonic() - self.started
        if error is not None:
            report.error = error
        runs.finish_run(
            self.engine,
            self.claim.id,
            status,
            self.clock(),
            owner=self.owner,
            report=report.to_json(),
        )
        return report

    async def fail(self, problem: str, detail: str) -> RunReport:
        report = self.finish(RunStatus.FAILED, detail)
        log.error("run %s failed: %s", report.run_date, detail, extra={"run": report.to_json()})
        await self.alert(problem, detail)
        return report


async def run_digest(
    config: Config,
    engine: Engine,
    run_date: date,
    transport: Transport,
    *,
    clock: Clock = utc_now,
    options: RunOptions | None = None,
) -> RunReport:
    """One full run for ``run_date``. Never raises for a source or SMTP failure: the report says what failed."""
    report = RunReport(run_date=run_date)
    started = time.monotonic()
    owner = runs.this_owner()
    abandoned = runs.recover_abandoned(engine, clock(), owner)
    if abandoned:
        log.warning("marked %d abandoned run(s) of dead processes as interrupted", abandoned)
    opts = options or RunOptions()
    # A finished date is opened again only for subscribers it has no digest for yet (a later slot's).
    todo = unplanned(engine, run_date, opts.audience)
    reopen = bool(todo)
    try:
        claim = runs.claim_run(engine, run_date, clock(), owner, reopen=reopen)
    except RunLockedError as exc:
        report.status, report.error = RunStatus.LOCKED, str(exc)
        return report
    if claim.finished:
        return _already_finished(engine, claim.id, report, started)
    if claim.took_over:
        log.warning("taking over the unfinished run for %s", run_date)
    run = _Run(config, engine, run_date, transport, clock, opts, claim, owner, report, started, todo)
    # The heartbeat runs beside everything else (fetch, retry pauses, slow batches): a live run is never
    # mistaken for a dead one and taken over.
    beating = asyncio.ensure_future(_heartbeat(engine, claim.id, owner, clock))
    try:
        return await _run_claimed(run)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


def _already_finished(engine: Engine, run_id: int, report: RunReport, started: float) -> RunReport:
    """A rerun of a finished date: this run sent nothing, and says so (its counts are its own: zero)."""
    earlier = RunReport(run_date=report.run_date)
    _fill_counts(earlier, outbox.state_counts(engine, run_id))
    report.status = RunStatus.DONE
    report.problems.append(
        f"the run for {report.run_date} had already finished ({earlier.sent} sent, {earlier.failed} failed, "
        f"{earlier.uncertain} uncertain then): nothing was sent now"
    )
    report.seconds = time.monotonic() - started
    log.info("run %s had already finished: nothing sent", report.run_date, extra={"run": report.to_json()})
    return report


async def _heartbeat(engine: Engine, run_id: int, owner: str, clock: Clock) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            runs.heartbeat(engine, run_id, clock(), owner)
        except StoreError as exc:  # a busy database must not kill the run
            log.warning("%s", exc)


async def _run_claimed(run: _Run) -> RunReport:
    config, engine, report = run.config, run.engine, run.report
    # Give up on work past the retry deadline first: its papers are then free for today's plan.
    deadline = run.clock() - timedelta(hours=config.smtp.retry_hours)
    expired = outbox.expire_retries(engine, deadline, run.clock())
    if expired:
        report.problems.append(
            f"{expired} earlier deliveries gave up after {config.smtp.retry_hours} hours of retries"
        )
    try:
        await _fetch_and_plan(run)
    except SourceError as exc:
        return await run.fail("source", f"the paper source failed: {exc}")
    # [[channels]]: the day's papers, once per channel (digest/channels/post.py).
    await post_channels(config, engine, run.run_date, alert=run.alert, clock=run.clock)
    run_ids = sorted({run.claim.id, *outbox.retry_runs(engine, deadline)})
    try:
        if run.options.dispatch is not None:  # worker jobs send them (digest.jobs)
            await run.options.dispatch(run_ids, run.run_date)
        else:
            await Delivery(
                config, engine, run.transport, report, clock=run.clock, options=run.options
            ).deliver(run_ids, run.run_date)
    except DeliveryError as exc:
        return await run.fail("smtp", f"the SMTP server failed: {exc}")
    return await _close(run)


async def _fetch_and_plan(run: _Run) -> None:
    """Plan the subscribers of the date (of the slot's audience) who have no digest for it yet, after
    fetching the widest window they need (unless the options say the papers are already stored)."""
    config, engine, run_date, options = run.config, run.engine, run.run_date, run.options
    todo = run.todo
    if options.fetch and (todo or not run.claim.planned):
        fetched = await refresh_window(config, engine, run_date, now=run.clock(), cadence=todo.cadence)
        run.report.papers_fetched = len(fetched.papers)
        if fetched.anomalies:  # the digest still goes out; those days are asked again at the next refresh
            service = ServiceMail.for_config(config, run.transport, run.clock)
            await alert_anomalies(service, engine, fetched.anomalies)
    else:
        run.report.papers_fetched = runs.papers_fetched(engine, run.claim.id)
    if run.claim.planned and not todo:
        return
    with planning.planning_lock(engine):  # another date's plan must see these rows, and we theirs
        # In chunks, each written before the next is read; who got a row meanwhile is not read again.
        filled = plan_outbox(config, engine, run.claim.id, run.clock, options.audience)
    log.info("planned %d deliveries for %s", filled, run_date)


async def _close(run: _Run) -> RunReport:
    """Count, alert on what needs the operator, and close the run."""
    config, report = run.config, run.report
    counts = outbox.state_counts(run.engine, run.claim.id)
    _fill_counts(report, counts)
    unfinished = sum(counts.get(state, 0) for state in _UNFINISHED)
    status = RunStatus.DONE if unfinished == 0 else RunStatus.INCOMPLETE
    if unfinished and run.options.stopping:
        status = RunStatus.INTERRUPTED
    if counts.get(DeliveryState.UNCERTAIN, 0):
        report.problems.append(
            f"{counts[DeliveryState.UNCERTAIN]} deliveries are uncertain (the connection dropped after the "
            "message was sent); they are not resent"
        )
    attempted = report.sent + report.failed
    if report.failed >= 5 and report.failed > 0.2 * attempted:
        await run.alert("bounces", f"{report.failed} of {attempted} deliveries failed permanently")
    if status == RunStatus.INCOMPLETE and sending_pause(run.engine).paused:  # the kill switch, not a failure
        report.problems.append("sending is paused (kill switch): the rest goes out after the release")
    elif status == RunStatus.INCOMPLETE:
        await run.alert(
            "retrying",
            f"{unfinished} deliveries of {run.run_date} failed temporarily and are waiting for a retry "
            f"(for up to {config.smtp.retry_hours} hours); check the SMTP relay",
        )
    run.finish(status)
    log.info(
        "run %s %s: %d sent, %d failed, %d uncertain, %d skipped",
        run.run_date,
        report.status,
        report.sent,
        report.failed,
        report.uncertain,
        report.skipped_empty,
        extra={"run": report.to_json()},
    )
    return report


def _fill_counts(report: RunReport, counts: dict[DeliveryState, int]) -> None:
    report.sent = counts.get(DeliveryState.SENT, 0)
    report.failed = counts.get(DeliveryState.FAILED, 0)
    report.uncertain = counts.get(DeliveryState.UNCERTAIN, 0)
    report.skipped_empty = counts.get(DeliveryState.SKIPPED, 0)
    report.retried = counts.get(DeliveryState.RETRY, 0) + counts.get(DeliveryState.PENDING, 0)
    report.subscribers = sum(counts.values())


async def dry_run_digest(
    config: Config, engine: Engine, run_date: date, out_dir: Path, *, clock: Clock = utc_now
) -> RunReport:
    """Everything but the sending and the bookkeeping: the mails of the real plan (the same fetch window,
    weekly ones included) are written to ``out_dir`` as .eml files."""
    started = time.monotonic()
    report = RunReport(run_date=run_date)
    cadence = fetch_cadence(due_subscribers(engine, run_date))
    report.papers_fetched = len(await fetch_and_store(config, engine, run_date, now=clock(), cadence=cadence))
    composer = Composer.for_config(config)
    async with FileTransport(out_dir) as transport:
        for item in plan_day(config, engine, run_date):
            report.subscribers += 1
            mail = composer.compose(item.subscriber, item.matches, run_date, clock())
            if mail is None:
                report.skipped_empty += 1
                continue
            await transport.send(envelope_sender(config), mail.subscriber.email, mail.message)
            report.sent += 1
    report.status = RunStatus.DONE
    report.seconds = time.monotonic() - started
    return report


def preview_digest(config: Config, engine: Engine, email: str, run_date: date, out_dir: Path) -> list[Path]:
    """Render one subscriber's digest from stored papers into out_dir (.html, .txt, .eml); sends nothing."""
    sub = find_subscriber(engine, email)
    if sub is None:
        raise SubscriberError(f"{email}: no such subscriber (see 'digest subscribers')")
    planned = plan_subscriber(config, engine, sub, run_date)
    mail = Composer.for_config(config).compose(sub, planned.matches, run_date, utc_now())
    if mail is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{run_date.isoformat()}-{_safe_name(sub.email)}"
    files = [out_dir / f"{stem}.html", out_dir / f"{stem}.txt", out_dir / f"{stem}.eml"]
    files[0].write_text(mail.html, encoding="utf-8")
    files[1].write_text(mail.text, encoding="utf-8")
    files[2].write_bytes(mail.message)
    return files


def _safe_name(email: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in email)[:100]


def run_from_cli(
    config: Config, run_date: date, *, dry_run: bool, out_dir: Path, progress: Progress | None = None
) -> RunReport:
    """`digest run`: open the store, sync config subscribers, run (``progress`` sees done/total as it goes)."""
    engine = open_store(config)
    if dry_run:  # records nothing: not even the config's subscribers
        check_config_subscribers(config)
        return asyncio.run(dry_run_digest(config, engine, run_date, out_dir))
    sync_subscribers(config, engine)

    async def run() -> RunReport:
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            return await run_digest(config, engine, run_date, pool, options=RunOptions(progress=progress))

    return asyncio.run(run())
