"""One digest run for a date, end to end: fetch, store, diff, match, render, deliver, report.

Idempotent: the ``run`` row for the date is the lock, the outbox rows are written before any send, each row
is claimed with a conditional update, and ``sent`` is recorded with the papers it carried in one transaction.
A rerun of a finished date sends nothing; a rerun of a crashed date finishes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from digest.addresses import normalize_email
from digest.config import Config
from digest.errors import ConfigError, DeliveryError, RuleError, RunLockedError, SourceError, SubscriberError
from digest.mailer import FileTransport, SendOutcome, SmtpPool, SmtpSettings, Transport
from digest.message import DkimSigner, build_message, make_message_id
from digest.models import (
    Cadence,
    DeliveryState,
    MatchedPaper,
    Paper,
    Rule,
    RunReport,
    Subscriber,
    SubscriberStatus,
)
from digest.notices import manage_url, render_admin_alert, render_confirmation, unsubscribe_url
from digest.render import DigestContext, render_digest, shown_papers
from digest.rules import BatchMatcher, parse_rule
from digest.sources import fetch_days
from digest.store import db, outbox
from digest.store.claims import ClaimBatcher
from digest.store.lookups import papers_by_ids, subscribers_by_ids
from digest.store.papers import delivered_ids, load_papers, upsert_papers
from digest.store.subscribers import (
    active_subscribers,
    add_subscriber,
    find_subscriber,
    record_confirmation_sent,
    release_confirmation_claim,
    set_rules,
    set_status,
    sync_config_subscribers,
)

log = logging.getLogger("digest.pipeline")

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]

#: Within one run, a temporary failure is retried when its next attempt is due within this long.
IN_RUN_RETRY_WINDOW = timedelta(minutes=5)
#: How often a run writes its heartbeat (a run silent for outbox.STALE_AFTER is taken for dead).
HEARTBEAT_S = 20.0
#: Distinct rule sets whose matches a Composer keeps (per run; cleared when full).
SELECT_CACHE_SIZE = 4096
#: Weekly subscribers see the papers of the last seven days.
WEEKLY_WINDOW_DAYS = 6


def utc_now() -> datetime:
    return datetime.now(UTC)


def open_store(config: Config) -> sa.Engine:
    """The database of the config, migrated to the newest schema."""
    return db.open_database(config.database_url)


def window(config: Config, run_date: date, cadence: Cadence = Cadence.DAILY) -> tuple[date, date]:
    days = config.source.lookback_days
    if cadence == Cadence.WEEKLY:
        days = max(days, WEEKLY_WINDOW_DAYS)
    return run_date - timedelta(days=days), run_date


async def fetch_and_store(
    config: Config, engine: sa.Engine, run_date: date, *, now: datetime | None = None, weekly: bool = False
) -> list[Paper]:
    """Fetch the run date and the look-back days (a week when a weekly digest is due) and upsert them.

    SourceError stops it: nothing is stored from a source that answered something we cannot trust.
    """
    start, end = window(config, run_date, Cadence.WEEKLY if weekly else Cadence.DAILY)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    batch = await fetch_days(config.source, days)
    upsert_papers(engine, batch.papers, now or utc_now())
    log.info(
        "fetched %d papers for %s..%s", len(batch.papers), start, end, extra={"papers": len(batch.papers)}
    )
    return list(batch.papers)


def stored_papers(config: Config, engine: sa.Engine, run_date: date) -> list[Paper]:
    start, end = window(config, run_date)
    return load_papers(engine, start, end, min_upvotes=config.source.min_upvotes)


def is_due(sub: Subscriber, run_date: date) -> bool:
    return sub.cadence != Cadence.WEEKLY or sub.weekday == run_date.weekday()


def plan_run(config: Config, engine: sa.Engine, run_date: date) -> list[outbox.PlannedDelivery]:
    """Per due subscriber: the matching papers of the window never delivered to them, best first."""
    subs = [s for s in active_subscribers(engine) if is_due(s, run_date)]
    if not subs:
        return []
    plan: list[outbox.PlannedDelivery] = []
    for cadence in (Cadence.DAILY, Cadence.WEEKLY):
        group = [s for s in subs if s.cadence == cadence]
        if not group:
            continue
        start, end = window(config, run_date, cadence)
        papers = load_papers(engine, start, end, min_upvotes=config.source.min_upvotes)
        ids = [s.id for s in group]
        seen = delivered_ids(engine, ids, [p.id for p in papers]) if papers else {}
        promised = outbox.in_flight_papers(engine, ids)
        matcher = BatchMatcher(papers)
        for sub in group:
            already = seen.get(sub.id, set()) | promised.get(sub.id, set())
            try:
                hits = [papers[i] for i in matcher.match(sub.rules)]
            except RuleError as exc:  # a stored rule this version cannot read: skip the one subscriber
                log.error("subscriber %d has a rule that cannot be parsed, skipped: %s", sub.id, exc.problem)
                hits = []
            fresh = sorted((p for p in hits if p.id not in already), key=lambda p: (-p.upvotes, p.id))
            plan.append(outbox.PlannedDelivery(sub.id, [p.id for p in fresh]))
    return plan


@dataclass
class DigestMail:
    """A rendered, ready-to-send digest."""

    subscriber: Subscriber
    message: bytes
    message_id: str
    shown: list[str]
    html: str
    text: str
    subject: str


@dataclass
class Composer:
    """Turns (subscriber, papers) into MIME bytes. Built once per run: the DKIM key is read once."""

    config: Config
    secret: str
    dkim: DkimSigner | None = None
    domain: str = "localhost"
    _matcher: BatchMatcher | None = field(default=None, repr=False)
    _matcher_key: tuple[str, ...] = field(default=(), repr=False)
    # select() per distinct rule set, for the current matcher: many subscribers share their rules.
    _selected: dict[tuple[Rule, ...], list[MatchedPaper]] = field(default_factory=dict, repr=False)
    _selected_for: BatchMatcher | None = field(default=None, repr=False)

    @classmethod
    def for_config(cls, config: Config) -> Composer:
        dkim = DkimSigner.from_config(config)
        address = parseaddr(config.smtp.from_)[1]
        return cls(config, config.secret_key(), dkim, address.rpartition("@")[2] or "localhost")

    def compose(
        self, sub: Subscriber, papers: Sequence[Paper], run_date: date, now: datetime
    ) -> DigestMail | None:
        """The subscriber's digest of ``papers`` (only those their rules match), or None when none do."""
        ids = {p.id for p in papers}
        return self.compose_from(sub, self.matcher(papers), ids, run_date, now)

    def matcher(self, papers: Sequence[Paper]) -> BatchMatcher:
        """One matcher per distinct paper set, so words, rules and explanations are computed once per run."""
        key = tuple(sorted(p.id for p in papers))
        if self._matcher is None or self._matcher_key != key:
            self._matcher, self._matcher_key = BatchMatcher(sorted(papers, key=lambda p: p.id)), key
        return self._matcher

    def _select(self, matcher: BatchMatcher, rules: tuple[Rule, ...]) -> list[MatchedPaper]:
        if self._selected_for is not matcher or len(self._selected) >= SELECT_CACHE_SIZE:
            self._selected, self._selected_for = {}, matcher
        found = self._selected.get(rules)
        if found is None:
            found = self._selected[rules] = matcher.select(rules)
        return found

    def compose_from(
        self, sub: Subscriber, matcher: BatchMatcher, allowed: set[str], run_date: date, now: datetime
    ) -> DigestMail | None:
        matched = [m for m in self._select(matcher, sub.rules) if m.paper.id in allowed]
        if not matched and (self.config.schedule.skip_empty or allowed):
            return None  # (with skip_empty = false, a planned empty digest still goes out)
        shown = shown_papers(matched, self.config.digest.max_papers)
        unsub = unsubscribe_url(self.config, self.secret, sub)
        rendered = render_digest(
            DigestContext(
                recipient=sub.email,
                name=sub.name,
                run_date=run_date,
                papers=matched,
                rules=sub.rules,
                max_papers=self.config.digest.max_papers,
                manage_url=manage_url(self.config, self.secret, sub),
                unsubscribe_url=unsub,
                postal_address=self.config.digest.postal_address,
                title=self.config.digest.title,
                base_url=self.config.source.base_url,
            )
        )
        message_id = make_message_id(self.domain)
        message = build_message(
            rendered,
            sender=self.config.smtp.from_,
            recipient=sub.email,
            list_id=self.config.digest.list_id,
            unsubscribe_url=unsub,
            unsubscribe_mailto=self.config.digest.unsubscribe_mailto,
            message_id=message_id,
            date=now,
            dkim=self.dkim,
        )
        return DigestMail(
            sub,
            message,
            message_id,
            [m.paper.id for m in shown],
            rendered.html,
            rendered.text,
            rendered.subject,
        )


@dataclass
class RunOptions:
    retry_base_s: float = 30.0
    batch_size: int = 0  # 0: 4 x pool size
    in_run_retry_window: timedelta = IN_RUN_RETRY_WINDOW
    progress: Progress | None = None
    sleep: Callable[[float], Any] = field(default=asyncio.sleep)
    #: Set it to stop gracefully (SIGTERM): no new message is handed to the server, messages already
    #: handed over finish, claimed ones not yet handed over go back to pending; the run ends "interrupted".
    stop: asyncio.Event | None = None

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep before a retry, waking early when asked to stop."""
        if self.stop is None:
            await self.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)


async def run_digest(
    config: Config,
    engine: sa.Engine,
    run_date: date,
    transport: Transport,
    *,
    clock: Clock = utc_now,
    options: RunOptions | None = None,
) -> RunReport:
    """One full run for ``run_date``. Never raises for a source or SMTP failure: the report says what failed."""
    opts = options or RunOptions()
    started = time.monotonic()
    report = RunReport(run_date=run_date)
    now = clock()
    owner = outbox.this_owner()
    abandoned = outbox.recover_abandoned(engine, now, owner)
    if abandoned:
        log.warning("marked %d abandoned run(s) of dead processes as interrupted", abandoned)
    try:
        claim = outbox.claim_run(engine, run_date, now, owner)
    except RunLockedError as exc:
        report.status = "locked"
        report.error = str(exc)
        return report
    if claim.finished:
        return _already_finished(engine, claim.id, report, started)
    if claim.took_over:
        log.warning("taking over the unfinished run for %s", run_date)
    # The heartbeat runs beside everything else (fetch, retry pauses, slow batches): a live run is never
    # mistaken for a dead one and taken over.
    beating = asyncio.ensure_future(_heartbeat(engine, claim.id, owner, clock))
    try:
        return await _run_claimed(
            config, engine, run_date, transport, claim, owner, clock, opts, report, started
        )
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


def _already_finished(engine: sa.Engine, run_id: int, report: RunReport, started: float) -> RunReport:
    """A rerun of a finished date: this run sent nothing, and says so (its counts are its own: zero)."""
    earlier = RunReport(run_date=report.run_date)
    _fill_counts(earlier, outbox.state_counts(engine, run_id))
    report.status = "done"
    report.problems.append(
        f"the run for {report.run_date} had already finished ({earlier.sent} sent, {earlier.failed} failed, "
        f"{earlier.uncertain} uncertain then): nothing was sent now"
    )
    report.seconds = time.monotonic() - started
    log.info(
        "run %s had already finished: nothing sent",
        report.run_date,
        extra={"run": report.to_json()},
    )
    return report


async def _heartbeat(engine: sa.Engine, run_id: int, owner: str, clock: Clock) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            outbox.heartbeat(engine, run_id, clock(), owner)
        except sa.exc.SQLAlchemyError as exc:  # a busy database must not kill the run
            log.warning("could not write the run heartbeat: %s", exc)


async def _run_claimed(
    config: Config,
    engine: sa.Engine,
    run_date: date,
    transport: Transport,
    claim: outbox.RunClaim,
    owner: str,
    clock: Clock,
    opts: RunOptions,
    report: RunReport,
    started: float,
) -> RunReport:
    now = clock()
    composer = Composer.for_config(config)
    # Give up on work past the retry deadline first: its papers are then free for today's plan.
    deadline = clock() - timedelta(hours=config.smtp.retry_hours)
    expired = outbox.expire_retries(engine, deadline, clock())
    if expired:
        report.problems.append(
            f"{expired} earlier deliveries gave up after {config.smtp.retry_hours} hours of retries"
        )
    if not claim.planned:
        try:
            papers = await fetch_and_store(
                config, engine, run_date, now=now, weekly=_weekly_due(engine, run_date)
            )
        except SourceError as exc:
            return await _fail(
                config,
                engine,
                claim.id,
                owner,
                report,
                "source",
                f"the paper source failed: {exc}",
                transport,
                clock,
                started,
            )
        report.papers_fetched = len(papers)
        with outbox.planning_lock(engine):  # another date's plan must see these rows, and we theirs
            plan = plan_run(config, engine, run_date)
            outbox.write_plan(engine, claim.id, plan, clock(), skip_empty=config.schedule.skip_empty)
        log.info("planned %d deliveries for %s", sum(1 for p in plan if p.paper_ids), run_date)
    else:
        report.papers_fetched = _papers_fetched(engine, claim.id)

    run_ids = sorted({claim.id, *outbox.retry_runs(engine, deadline)})
    try:
        await _deliver(config, engine, run_ids, run_date, transport, composer, clock, opts, report)
    except DeliveryError as exc:
        return await _fail(
            config,
            engine,
            claim.id,
            owner,
            report,
            "smtp",
            f"the SMTP server failed: {exc}",
            transport,
            clock,
            started,
        )

    counts = outbox.state_counts(engine, claim.id)
    _fill_counts(report, counts)
    unfinished = (
        counts.get(DeliveryState.PENDING, 0)
        + counts.get(DeliveryState.RETRY, 0)
        + counts.get(DeliveryState.SENDING, 0)
    )
    report.status = "done" if unfinished == 0 else "incomplete"
    if unfinished and opts.stopping:
        report.status = "interrupted"
    if counts.get(DeliveryState.UNCERTAIN, 0):
        report.problems.append(
            f"{counts[DeliveryState.UNCERTAIN]} deliveries are uncertain (the connection dropped after the message was sent); "
            "they are not resent"
        )
    attempted = report.sent + report.failed
    if report.failed >= 5 and report.failed > 0.2 * attempted:
        await alert_admin(
            config,
            engine,
            transport,
            run_date,
            "bounces",
            f"{report.failed} of {attempted} deliveries failed permanently",
            clock,
        )
    if report.status == "incomplete":
        await alert_admin(
            config,
            engine,
            transport,
            run_date,
            "retrying",
            f"{unfinished} deliveries of {run_date} failed temporarily and are waiting for a retry "
            f"(for up to {config.smtp.retry_hours} hours); check the SMTP relay",
            clock,
        )
    report.seconds = time.monotonic() - started
    outbox.finish_run(
        engine,
        claim.id,
        report.status,
        clock(),
        owner=owner,
        papers_fetched=report.papers_fetched,
        report=report.to_json(),
    )
    log.info(
        "run %s %s: %d sent, %d failed, %d uncertain, %d skipped",
        run_date,
        report.status,
        report.sent,
        report.failed,
        report.uncertain,
        report.skipped_empty,
        extra={"run": report.to_json()},
    )
    return report


def _weekly_due(engine: sa.Engine, run_date: date) -> bool:
    return any(s.cadence == Cadence.WEEKLY and is_due(s, run_date) for s in active_subscribers(engine))


def _papers_fetched(engine: sa.Engine, run_id: int) -> int:
    from digest.store.tables import run

    with engine.connect() as conn:
        return int(conn.execute(sa.select(run.c.papers_fetched).where(run.c.id == run_id)).scalar() or 0)


def _fill_counts(report: RunReport, counts: dict[str, int]) -> None:
    report.sent = counts.get(DeliveryState.SENT, 0)
    report.failed = counts.get(DeliveryState.FAILED, 0)
    report.uncertain = counts.get(DeliveryState.UNCERTAIN, 0)
    report.skipped_empty = counts.get(DeliveryState.SKIPPED, 0)
    report.retried = counts.get(DeliveryState.RETRY, 0) + counts.get(DeliveryState.PENDING, 0)
    report.subscribers = sum(counts.values())


async def _fail(
    config: Config,
    engine: sa.Engine,
    run_id: int,
    owner: str,
    report: RunReport,
    problem: str,
    detail: str,
    transport: Transport,
    clock: Clock,
    started: float,
) -> RunReport:
    report.status = "failed"
    report.error = detail
    report.seconds = time.monotonic() - started
    outbox.finish_run(engine, run_id, "failed", clock(), owner=owner, error=detail, report=report.to_json())
    log.error("run %s failed: %s", report.run_date, detail, extra={"run": report.to_json()})
    await alert_admin(config, engine, transport, report.run_date, problem, detail, clock)
    return report


async def alert_admin(
    config: Config,
    engine: sa.Engine,
    transport: Transport,
    day: date,
    problem: str,
    detail: str,
    clock: Clock = utc_now,
) -> bool:
    """Mail the admin about a problem, at most once per problem per day. True when a mail went out."""
    if not outbox.record_alert(engine, day, problem, detail, clock()):
        log.info("alert %s for %s already raised today", problem, day)
        return False
    admin = config.digest.admin_email
    if not admin:
        return False
    rendered = render_admin_alert(f"{config.digest.title}: {problem} problem on {day}", detail)
    message = build_message(
        rendered,
        sender=config.smtp.from_,
        recipient=admin,
        list_id=config.digest.list_id,
        unsubscribe_url=config.web.base_url,
        message_id=make_message_id(parseaddr(config.smtp.from_)[1].rpartition("@")[2] or "localhost"),
        date=clock(),
    )
    try:
        outcome = await transport.send(parseaddr(config.smtp.from_)[1], admin, message)
    except DeliveryError as exc:
        log.error("could not mail the admin alert (%s): %s", problem, exc)
        return False
    if outcome.status != "sent":
        log.error("the admin alert (%s) was not accepted: %s %s", problem, outcome.code, outcome.reply)
        return False
    outbox.mark_alert_sent(engine, day, problem, clock())
    return True


async def _deliver(
    config: Config,
    engine: sa.Engine,
    run_ids: list[int],
    run_date: date,
    transport: Transport,
    composer: Composer,
    clock: Clock,
    opts: RunOptions,
    report: RunReport,
) -> None:
    """Send every due outbox row of ``run_ids`` in batches, waiting for in-run retries that are due soon."""
    # Held connections for the many small transactions of the loop (see outbox.Bind): one for batches,
    # one in autocommit for the single-statement claims.
    with engine.connect() as conn, engine.connect().execution_options(isolation_level="AUTOCOMMIT") as claims:
        batcher = ClaimBatcher(claims, clock)
        try:
            await _deliver_loop(
                conn, batcher, config, engine, run_ids, run_date, transport, composer, clock, opts, report
            )
        finally:
            await batcher.aclose()
            # Rows claimed for a send that was cancelled before it began: nothing went out for them.
            outbox.release(conn, batcher.orphans, clock(), "not sent: the run stopped before this message")


async def _deliver_loop(
    conn: sa.Connection,
    claims: ClaimBatcher,
    config: Config,
    engine: sa.Engine,
    run_ids: list[int],
    run_date: date,
    transport: Transport,
    composer: Composer,
    clock: Clock,
    opts: RunOptions,
    report: RunReport,
) -> None:
    batch_size = opts.batch_size or max(8, 4 * config.smtp.pool_size)
    sender = parseaddr(config.smtp.from_)[1]
    paper_cache: dict[str, Paper] = {}
    total = _count_due(engine, run_ids)
    done = 0
    cursor = 0  # the id of the last row handled in this pass over the outbox
    while not opts.stopping:
        now = clock()
        rows = outbox.due_deliveries(conn, run_ids, now, batch_size, after_id=cursor)
        if rows:
            cursor = rows[-1].id
        elif cursor:
            cursor = 0  # end of a pass: start again from the top for retries that came due
            continue
        else:
            due = outbox.next_retry_at(conn, run_ids)
            if due is None or due - now > opts.in_run_retry_window:
                return
            await opts.pause(max(0.0, (due - now).total_seconds()))
            continue
        outcomes, settled = await _send_batch(
            conn,
            claims,
            config,
            engine,
            rows,
            run_date,
            transport,
            composer,
            sender,
            paper_cache,
            clock,
            opts,
        )
        recorded = outbox.record_outcomes(
            conn, outcomes, clock(), hard_bounce_limit=config.smtp.hard_bounce_limit
        )
        report.bounced += len(recorded.bounced)
        done += settled + sum(1 for o in outcomes if o.state != DeliveryState.RETRY)
        if opts.progress:
            opts.progress(min(done, total), total)


def _count_due(engine: sa.Engine, run_ids: list[int]) -> int:
    from digest.store.tables import delivery

    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    delivery.c.run_id.in_(run_ids),
                    delivery.c.state.in_([DeliveryState.PENDING, DeliveryState.RETRY]),
                )
            ).scalar()
            or 0
        )


async def _send_batch(
    conn: sa.Connection,
    claims: ClaimBatcher,
    config: Config,
    engine: sa.Engine,
    rows: list[outbox.Due],
    run_date: date,
    transport: Transport,
    composer: Composer,
    sender: str,
    paper_cache: dict[str, Paper],
    clock: Clock,
    opts: RunOptions,
) -> tuple[list[outbox.Outcome], int]:
    """Render, claim and send each row only as it goes to the server.

    Returns the outcomes to record, and how many rows were settled at once (skipped, failed to render).

    A row moves to ``sending`` right before its message is handed to the transport (at most pool_size at a
    time), so a process killed at any moment leaves only the messages really in flight as ``sending`` (and
    then ``uncertain``); the rest of the batch is still ``pending`` for the next run.
    """
    subs = subscribers_by_ids(engine, [r.subscriber_id for r in rows])
    # Last guard before sending: a paper already delivered to this person is never sent again.
    sent_before = delivered_ids(engine, list(subs), sorted({p for r in rows for p in r.paper_ids}))
    missing = {pid for r in rows for pid in r.paper_ids if pid not in paper_cache}
    if missing:
        paper_cache.update({p.id: p for p in papers_by_ids(engine, sorted(missing))})
    matcher = composer.matcher(list(paper_cache.values()))
    now = clock()
    outcomes: list[outbox.Outcome] = []
    jobs: list[tuple[outbox.Due, Subscriber]] = []

    settled = 0

    def settle(row: outbox.Due, state: DeliveryState, reply: str) -> None:
        # Straight to the final state (conditionally): no mail is involved, so it never passes `sending`.
        nonlocal settled
        settled += outbox.settle(conn, row, state, reply, now)

    for row in rows:
        sub = subs.get(row.subscriber_id)
        if sub is None or sub.status != SubscriberStatus.ACTIVE:
            # An unsubscribe (or pause, or deletion) takes effect at once, even for a planned digest.
            settle(row, DeliveryState.SKIPPED, f"not sent: subscriber is {sub.status if sub else 'deleted'}")
            continue
        jobs.append((row, sub))

    def compose(row: outbox.Due, sub: Subscriber) -> DigestMail | None:
        """The row's mail, or None after settling a row that has nothing to send (or failed to render)."""
        try:
            already = sent_before.get(sub.id, set())
            allowed = {p for p in row.paper_ids if p in paper_cache and p not in already}
            day = row.run_date or run_date  # a left-over row of an earlier run keeps its own date
            if not allowed and day != run_date:
                mail = None  # no "nothing new" mail for a day that is over
            else:
                mail = composer.compose_from(sub, matcher, allowed, day, now)
        except Exception as exc:  # one bad paper or template never stops the run
            log.exception("could not render the digest for subscriber %d", row.subscriber_id)
            settle(row, DeliveryState.FAILED, f"render failed: {type(exc).__name__}: {exc}")
            return None
        if mail is None:
            settle(row, DeliveryState.SKIPPED, "not sent: no matching papers left")
        return mail

    # At most pool_size messages are inside the transport at a time; the others wait here unclaimed,
    # where a stop (or a cancellation) leaves them pending and untouched.
    gate = asyncio.Semaphore(config.smtp.pool_size)
    handed: dict[int, outbox.Claimed] = {}  # row id -> claim, for messages that went into transport.send
    fatal: list[DeliveryError] = []

    async def send_one(row: outbox.Due, sub: Subscriber) -> outbox.Outcome | None:
        async with gate:
            if opts.stopping or fatal:
                return None
            # Rendered here, one at a time as connections free up, so rendering overlaps the other
            # connections' sends instead of keeping the whole pool idle while the batch renders.
            mail = compose(row, sub)
            if mail is None:
                return None
            claimed = await claims.claim(row)
            if claimed is None:
                return None  # another process claimed it first
            handed[row.id] = claimed
            try:
                result: SendOutcome = await transport.send(sender, mail.subscriber.email, mail.message)
            except DeliveryError as exc:  # raised before DATA: certainly not sent
                fatal.append(exc)
                outbox.release(conn, [claimed], clock(), f"not sent: {exc}")
                return None
        return _outcome(config, claimed, mail, result, clock(), opts)

    tasks = [asyncio.ensure_future(send_one(row, sub)) for row, sub in jobs]
    try:
        results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        _record_cancelled(config, conn, jobs, tasks, handed, outcomes, clock)
        raise
    for (row, sub), res in zip(jobs, results, strict=True):
        if isinstance(res, outbox.Outcome):
            outcomes.append(res)
        elif isinstance(res, BaseException) and row.id in handed:
            log.error("sending to %s failed unexpectedly: %r", sub.email, res)
            outcomes.append(
                outbox.Outcome(
                    handed[row.id], DeliveryState.UNCERTAIN, f"unexpected error while sending: {res!r}"
                )
            )
    if fatal:
        outbox.record_outcomes(conn, outcomes, clock(), hard_bounce_limit=config.smtp.hard_bounce_limit)
        raise fatal[0]
    return outcomes, settled


def _record_cancelled(
    config: Config,
    conn: sa.Connection,
    jobs: list[tuple[outbox.Due, Subscriber]],
    tasks: Sequence[asyncio.Future[outbox.Outcome | None]],
    handed: dict[int, outbox.Claimed],
    outcomes: list[outbox.Outcome],
    clock: Clock,
) -> None:
    """The run was cancelled mid-batch: record what is known before the cancellation goes on.

    Finished sends are recorded as usual; a message never handed to the transport was never claimed and
    stays pending; one cancelled inside the transport may or may not have reached the server: uncertain
    (RFC 1047). (gather has already cancelled the unfinished tasks.)
    """
    for (row, _mail), task in zip(jobs, tasks, strict=True):
        finished = task.done() and not task.cancelled()
        error = task.exception() if finished else None
        res = task.result() if finished and error is None else None
        if res is not None:
            outcomes.append(res)
        elif row.id in handed and not isinstance(error, DeliveryError):
            outcomes.append(
                outbox.Outcome(
                    handed[row.id],
                    DeliveryState.UNCERTAIN,
                    "process stopped while sending; not resent (RFC 1047)",
                )
            )
    outbox.record_outcomes(conn, outcomes, clock(), hard_bounce_limit=config.smtp.hard_bounce_limit)


def _outcome(
    config: Config, c: outbox.Claimed, mail: DigestMail, result: SendOutcome, now: datetime, opts: RunOptions
) -> outbox.Outcome:
    reply = f"{result.code or ''} {result.reply}".strip()
    if result.status == "sent":
        return outbox.Outcome(c, DeliveryState.SENT, reply, delivered=mail.shown, message_id=mail.message_id)
    if result.status == "uncertain":
        return outbox.Outcome(c, DeliveryState.UNCERTAIN, reply, message_id=mail.message_id)
    if result.status == "permanent":
        return outbox.Outcome(c, DeliveryState.FAILED, reply, permanent_failure=True)
    first = c.first_attempt_at or now
    deadline = first + timedelta(hours=config.smtp.retry_hours)
    if c.attempts >= config.smtp.max_attempts * 4 or now >= deadline:
        return outbox.Outcome(c, DeliveryState.FAILED, f"gave up after {c.attempts} attempts: {reply}")
    next_at = now + outbox.retry_backoff(c.attempts, opts.retry_base_s)
    return outbox.Outcome(c, DeliveryState.RETRY, reply, next_attempt_at=min(next_at, deadline))


async def dry_run_digest(
    config: Config, engine: sa.Engine, run_date: date, out_dir: Path, *, clock: Clock = utc_now
) -> RunReport:
    """Everything but the sending and the bookkeeping: the mails are written to ``out_dir`` as .eml files."""
    started = time.monotonic()
    report = RunReport(run_date=run_date)
    report.papers_fetched = len(await fetch_and_store(config, engine, run_date, now=clock()))
    composer = Composer.for_config(config)
    plan = plan_run(config, engine, run_date)
    subs = {s.id: s for s in active_subscribers(engine)}
    papers = {p.id: p for p in papers_by_ids(engine, sorted({pid for p in plan for pid in p.paper_ids}))}
    async with FileTransport(out_dir) as transport:
        for item in plan:
            report.subscribers += 1
            mail = composer.compose(
                subs[item.subscriber_id], [papers[p] for p in item.paper_ids], run_date, clock()
            )
            if mail is None:
                report.skipped_empty += 1
                continue
            await transport.send(parseaddr(config.smtp.from_)[1], mail.subscriber.email, mail.message)
            report.sent += 1
    report.status = "done"
    report.seconds = time.monotonic() - started
    return report


def preview_digest(
    config: Config, engine: sa.Engine, email: str, run_date: date, out_dir: Path
) -> list[Path]:
    """Render one subscriber's digest from stored papers into out_dir (.html, .txt, .eml); sends nothing."""
    sub = find_subscriber(engine, email)
    if sub is None:
        raise SubscriberError(f"{email}: no such subscriber (see 'digest subscribers')")
    start, end = window(config, run_date, sub.cadence)
    papers = load_papers(engine, start, end, min_upvotes=config.source.min_upvotes)
    seen = delivered_ids(engine, [sub.id], [p.id for p in papers]).get(sub.id, set())
    mail = Composer.for_config(config).compose(
        sub, [p for p in papers if p.id not in seen], run_date, utc_now()
    )
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


async def admin_subscribe(
    config: Config,
    engine: sa.Engine,
    email: str,
    rules: Sequence[str],
    *,
    name: str | None = None,
    confirmed: bool = False,
) -> Subscriber:
    """Add a subscriber from the command line; without ``confirmed`` a confirmation mail is sent.

    An address already pending gets its rules replaced (and the mail again, at most once an hour); an active or
    paused one gets its rules replaced; ``confirmed`` also activates a pending or bounced address. An address
    that unsubscribed is refused: only its owner can come back (on the web page).
    """
    now = utc_now()
    sub = find_subscriber(engine, email)
    if sub is None:
        status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
        sub = add_subscriber(engine, email, rules, now=now, name=name, status=status)
    elif sub.status == SubscriberStatus.UNSUBSCRIBED:
        raise SubscriberError(f"{sub.email} unsubscribed; only they can subscribe again (on the web page)")
    elif sub.status == SubscriberStatus.PENDING and not confirmed:
        # The hourly slot is claimed before anything changes: a refused command leaves the subscription as
        # it was. New rules bump the link version: the earlier mail's link confirmed the earlier rules.
        if not record_confirmation_sent(engine, sub.id, now):
            raise SubscriberError(
                f"{sub.email}: a confirmation mail went out less than an hour ago; try again later"
            )
        return await _mail_confirmation(config, engine, set_rules(engine, sub.id, rules, now=now), now)
    else:
        sub = set_rules(engine, sub.id, rules, now=now)
        if confirmed and sub.status in (SubscriberStatus.PENDING, SubscriberStatus.BOUNCED):
            sub = set_status(engine, sub.id, SubscriberStatus.ACTIVE, now=now)
        return sub
    if sub.status != SubscriberStatus.PENDING:
        return sub
    if not record_confirmation_sent(engine, sub.id, now):
        raise SubscriberError(
            f"{sub.email}: a confirmation mail went out less than an hour ago; try again later"
        )
    return await _mail_confirmation(config, engine, sub, now)


async def _mail_confirmation(config: Config, engine: sa.Engine, sub: Subscriber, now: datetime) -> Subscriber:
    """Send the confirmation mail whose hourly slot was just claimed; give the slot back if nothing went out."""
    rendered = render_confirmation(config, config.secret_key(), sub)
    message = build_message(
        rendered,
        sender=config.smtp.from_,
        recipient=sub.email,
        list_id=config.digest.list_id,
        unsubscribe_url=unsubscribe_url(config, config.secret_key(), sub),
        date=now,
    )
    try:
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            outcome = await pool.send(parseaddr(config.smtp.from_)[1], sub.email, message)
    except DeliveryError:
        release_confirmation_claim(engine, sub.id)  # nothing went out: a retry must not wait an hour
        raise
    if outcome.status == "uncertain":  # it may have arrived: the hourly slot stays taken
        raise SubscriberError(f"{sub.email}: the connection dropped while sending the confirmation mail")
    if outcome.status != "sent":
        release_confirmation_claim(engine, sub.id)
        raise SubscriberError(
            f"{sub.email}: the confirmation mail was refused: {outcome.code} {outcome.reply}"
        )
    return sub


def admin_unsubscribe(config: Config, engine: sa.Engine, email: str) -> None:
    sub = find_subscriber(engine, email)
    if sub is None:
        raise SubscriberError(f"{email}: no such subscriber (see 'digest subscribers')")
    set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=utc_now(), allow_managed=True)


def check_config_subscribers(config: Config) -> None:
    """Validate the addresses and rules of [[subscribers]]; ConfigError names the file, the key and the rule."""
    problems: list[str] = []
    for i, entry in enumerate(config.subscribers):
        try:
            normalize_email(entry.email)
        except SubscriberError as exc:
            problems.append(f"{config.path}: subscribers.{i}.email: {exc}")
        for j, query in enumerate(entry.rules):
            try:
                parse_rule(query)
            except RuleError as exc:
                problems.append(f"{config.path}: subscribers.{i}.rules.{j}: {exc}")
    if problems:
        raise ConfigError(problems)


def sync_subscribers(config: Config, engine: sa.Engine) -> Any:
    """Make the database's config-managed subscribers match the [[subscribers]] of the config."""
    check_config_subscribers(config)
    return sync_config_subscribers(engine, config.subscribers, utc_now())


def run_from_cli(
    config: Config, run_date: date, *, dry_run: bool, out_dir: Path, console: Any = None
) -> RunReport:
    """`digest run`: open the store, sync config subscribers, run with a progress bar on a terminal."""
    engine = open_store(config)
    if dry_run:  # records nothing: not even the config's subscribers
        check_config_subscribers(config)
        return asyncio.run(dry_run_digest(config, engine, run_date, out_dir))
    sync_subscribers(config, engine)
    return asyncio.run(_run_with_progress(config, engine, run_date, console))


async def _run_with_progress(config: Config, engine: sa.Engine, run_date: date, console: Any) -> RunReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    interactive = bool(console is not None and console.is_terminal)
    async with SmtpPool(SmtpSettings.from_config(config)) as pool:
        if not interactive:
            last = [0.0]

            def log_progress(done: int, total: int) -> None:
                if time.monotonic() - last[0] > 5 or done == total:
                    last[0] = time.monotonic()
                    log.info("delivered %d/%d", done, total)

            return await run_digest(config, engine, run_date, pool, options=RunOptions(progress=log_progress))
        with Progress(
            TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        ) as bar:
            task = bar.add_task("send", total=None)

            def show(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return await run_digest(config, engine, run_date, pool, options=RunOptions(progress=show))
