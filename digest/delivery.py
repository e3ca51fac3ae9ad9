"""The send loop as an object: claim each due outbox row as it goes to the server, send it, record it.

One *sender* per connection slot (``pool_size``) claims a row right before its message is handed to the
transport, and records the outcome in the same transaction as its next claim (digest/store/claims.py). So at
any committed moment at most ``pool_size`` rows are ``sending``: a process killed at any moment leaves at most
that many ``uncertain``; the rest is ``sent`` (recorded with the papers the mail showed, in one transaction)
or still ``pending`` for the next run.

Temporary failures: a row is tried at most ``smtp.max_attempts`` times within one run (the in-run retries
wait for their backoff while it is due within ``in_run_retry_window``); after that it stays ``retry`` for
later runs, until ``smtp.retry_hours`` after its first attempt, when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from digest.clock import Clock, utc_now
from digest.compose import DigestMail
from digest.config import Config
from digest.errors import DeliveryError
from digest.heap import fewer_collections
from digest.mailer import SendOutcome, Transport
from digest.models import DeliveryState, RunReport, Subscriber, SubscriberStatus
from digest.outgoing import envelope_sender
from digest.rules import BatchMatcher
from digest.selection import DeliveryKit, PaperSelection
from digest.store import outbox
from digest.store.claims import ClaimBatcher
from digest.store.db import Bind, Engine
from digest.store.lookups import subscribers_by_ids
from digest.store.papers import delivered_ids

log = logging.getLogger("digest.delivery")

Progress = Callable[[int, int], None]
#: Hands the due rows of some runs to someone else to send (digest.jobs: one procrastinate job per chunk).
Dispatch = Callable[[Sequence[int], date], Awaitable[None]]

#: Within one run, a temporary failure is retried when its next attempt is due within this long.
IN_RUN_RETRY_WINDOW = timedelta(minutes=5)


@dataclass
class RunOptions:
    retry_base_s: float = 30.0
    batch_size: int = 0  # 0: 16 x pool size (each query of a batch costs the same for 16 rows or 64)
    in_run_retry_window: timedelta = IN_RUN_RETRY_WINDOW
    progress: Progress | None = None
    sleep: Callable[[float], Any] = field(default=asyncio.sleep)
    #: Set it to stop gracefully (SIGTERM): no new message is handed to the server, messages already
    #: handed over finish, claimed ones not yet handed over go back to pending; the run ends "interrupted".
    stop: asyncio.Event | None = None
    #: Only the rows with ids in this range (inclusive): one delivery chunk of a worker job.
    id_range: tuple[int, int] | None = None
    #: Set: the run dispatches its rows (to worker jobs) instead of sending them itself.
    dispatch: Dispatch | None = None
    #: The subscriber ids a send-time slot plans (None: everyone due on the date, as ``digest run``).
    audience: frozenset[int] | None = None
    #: Fetch the source before planning new rows (a send-time slot plans from stored papers).
    fetch: bool = True
    #: A worker hands every chunk of a run the same kit: papers, matcher and renderings are made once.
    kit: DeliveryKit | None = None

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


@dataclass(frozen=True, slots=True)
class Job:
    """A row to send: rendered only once a connection is free for it (see Delivery._send_one)."""

    row: outbox.Due
    subscriber: Subscriber
    papers: frozenset[str]  # the row's papers that may still be sent to this subscriber
    day: date


@dataclass
class _Batch:
    """One batch in flight: its messages and what came of them."""

    jobs: list[Job] = field(default_factory=list)
    outcomes: list[outbox.Outcome] = field(default_factory=list)  # recorded, or handed to the batcher
    fatal: list[DeliveryError] = field(default_factory=list)
    settled: int = 0  # rows moved straight to a final state (skipped, failed to render)
    now: datetime = field(default_factory=utc_now)  # the batch's time: the Date of its mails
    matcher: BatchMatcher | None = None


#: The reply recorded for a row claimed but never handed over (it goes back to pending).
STOPPED = "not sent: the run stopped before this message"


class Delivery:
    """Sends every due outbox row of some runs through one transport, and counts into one report."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        transport: Transport,
        report: RunReport,
        *,
        clock: Clock = utc_now,
        options: RunOptions | None = None,
    ) -> None:
        self.config, self.engine, self.transport, self.report = config, engine, transport, report
        self.clock = clock
        self.options = options or RunOptions()
        self.kit = self.options.kit or DeliveryKit.for_config(config, engine)
        self.composer = self.kit.composer
        self._selection = PaperSelection(config, engine)
        #: Attempts made in this run, per row: past smtp.max_attempts a row waits for a later run.
        self._tries: dict[int, int] = {}

    async def deliver(self, run_ids: Sequence[int], run_date: date) -> None:
        """Send in batches until nothing is due, waiting for in-run retries that are due soon.

        Raises DeliveryError when the transport fails as a whole (nothing of the failing message was sent).
        """
        self._selection = self.kit.selection(run_ids, run_date)
        with fewer_collections(), self.engine.connect() as conn, self.engine.connect() as claims_conn:
            # Claims and outcomes are written in a worker thread, grouped (digest/store/claims.py).
            limit = self.config.smtp.hard_bounce_limit
            claims = ClaimBatcher(claims_conn, self.clock, hard_bounce_limit=limit)
            try:
                await self._loop(conn, claims, run_ids, run_date)
            finally:
                # Outcomes of senders cancelled meanwhile are still being written: wait for them.
                await claims.aclose()
                self.report.bounced += len(claims.take_bounced())
                # Rows claimed for a send that was cancelled before it began: nothing went out for them.
                outbox.release(conn, claims.orphans, self.clock(), STOPPED)

    async def _loop(self, conn: Bind, claims: ClaimBatcher, run_ids: Sequence[int], run_date: date) -> None:
        opts = self.options
        batch_size = opts.batch_size or max(16, 16 * self.config.smtp.pool_size)
        first, last = opts.id_range or (1, outbox.MAX_ID)
        total, done, cursor = outbox.count_due(self.engine, run_ids), 0, first - 1
        while not opts.stopping:
            now = self.clock()
            rows = outbox.due_deliveries(conn, run_ids, now, batch_size, after_id=cursor, upto_id=last)
            if rows:
                cursor = rows[-1].id
                rows = [r for r in rows if self._tries.get(r.id, 0) < self.config.smtp.max_attempts]
            elif cursor != first - 1:
                cursor = first - 1  # end of a pass: start again from the top for retries that came due
                continue
            else:
                due = outbox.next_retry_at(conn, run_ids, self._exhausted(), (first, last))
                if due is None or due - now > opts.in_run_retry_window:
                    return
                await opts.pause(max(0.0, (due - now).total_seconds()))
                continue
            if not rows:
                continue
            batch = await self._send_batch(conn, claims, rows, run_date)
            self.report.bounced += len(claims.take_bounced())
            done += batch.settled + sum(1 for o in batch.outcomes if o.state != DeliveryState.RETRY)
            if opts.progress:
                opts.progress(min(done, total), total)

    def _exhausted(self) -> set[int]:
        limit = self.config.smtp.max_attempts
        return {row_id for row_id, tries in self._tries.items() if tries >= limit}

    async def _send_batch(
        self, conn: Bind, claims: ClaimBatcher, rows: list[outbox.Due], run_date: date
    ) -> _Batch:
        """Render, claim and send each row only as it goes to the server; every outcome is recorded on return."""
        batch = self._prepare_batch(conn, rows, run_date)
        jobs = iter(batch.jobs)  # shared: each sender takes the next job when its connection is free
        # The jobs not taken yet wait here unclaimed, where a stop (or a cancellation) leaves them pending.
        count = min(self.config.smtp.pool_size, len(batch.jobs))
        senders = [asyncio.ensure_future(self._sender(conn, claims, jobs, batch)) for _ in range(count)]
        # A cancellation cancels the senders, which hand what they know to the batcher (see _sender).
        results = await asyncio.gather(*senders, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        if batch.fatal:
            raise batch.fatal[0]
        return batch

    def _prepare_batch(self, conn: Bind, rows: list[outbox.Due], run_date: date) -> _Batch:
        """Each row's job; rows of subscribers who are no longer active settle at once (skipped)."""
        subs = subscribers_by_ids(self.engine, [r.subscriber_id for r in rows])
        # Last guard before sending: a paper already delivered to this person is never sent again.
        sent_before = delivered_ids(self.engine, list(subs), sorted({p for r in rows for p in r.paper_ids}))
        batch = _Batch(
            now=self.clock(), matcher=self._selection.matcher_for(p for r in rows for p in r.paper_ids)
        )
        known = self._selection.papers
        for row in rows:
            sub = subs.get(row.subscriber_id)
            if sub is None or sub.status != SubscriberStatus.ACTIVE:
                # An unsubscribe (or pause, or deletion) takes effect at once, even for a planned digest.
                reply = f"not sent: subscriber is {sub.status if sub else 'deleted'}"
                self._settle(conn, batch, row, DeliveryState.SKIPPED, reply)
                continue
            already = sent_before.get(sub.id, set())
            allowed = frozenset(p for p in row.paper_ids if p in known and p not in already)
            day = row.run_date or run_date  # a left-over row of an earlier run keeps its own date
            if not allowed and day != run_date:  # no "nothing new" mail for a day that is over
                self._settle(conn, batch, row, DeliveryState.SKIPPED, "not sent: no matching papers left")
                continue
            batch.jobs.append(Job(row, sub, allowed, day))
        return batch

    def _settle(self, conn: Bind, batch: _Batch, row: outbox.Due, state: DeliveryState, reply: str) -> None:
        # Straight to the final state (conditionally): no mail is involved, so it never passes `sending`.
        batch.settled += outbox.settle(conn, row, state, reply, batch.now)

    def _render(self, conn: Bind, batch: _Batch, job: Job) -> DigestMail | None:
        """The job's mail, or None after settling a row with nothing to send (or whose render failed)."""
        assert batch.matcher is not None
        try:
            mail = None
            selected = self._selection.select(batch.matcher, job.subscriber.rules)
            matches = [m for m in selected if m.paper.id in job.papers]
            if matches or not job.papers:
                mail = self.composer.compose(job.subscriber, matches, job.day, batch.now)
        except Exception as exc:  # one bad paper or template never stops the run
            log.exception("could not render the digest for subscriber %d", job.row.subscriber_id)
            reply = f"render failed: {type(exc).__name__}: {exc}"
            self._settle(conn, batch, job.row, DeliveryState.FAILED, reply)
            return None
        if mail is None:
            self._settle(conn, batch, job.row, DeliveryState.SKIPPED, "not sent: no matching papers left")
        return mail

    async def _sender(self, conn: Bind, claims: ClaimBatcher, jobs: Iterator[Job], batch: _Batch) -> None:
        """One connection slot: claim a row, send it, record its outcome with the next claim (or at the end).

        Cancelled, it records what is known: its finished send as usual, and a message inside the transport,
        which may or may not have reached the server, as uncertain (RFC 1047).
        """
        done: list[outbox.Outcome] = []  # this sender's finished message, not handed to the batcher yet
        in_flight: outbox.Claimed | None = None
        try:
            for job in jobs:
                if self.options.stopping or batch.fatal:
                    break
                # Rendered here, one at a time as connections free up, so rendering overlaps the other
                # connections' sends instead of keeping the whole pool idle while the batch renders.
                mail = self._render(conn, batch, job)
                if mail is None:
                    continue
                handed, done = done, []
                claimed = await claims.claim(job.row, handed)
                if claimed is None:
                    continue  # another process claimed it first
                # Stopped while the claim was in flight: give it back.
                if self.options.stopping or batch.fatal:
                    outbox.release(conn, [claimed], self.clock(), STOPPED)
                    break
                in_flight = claimed
                outcome = await self._send_one(conn, claimed, mail, batch)
                in_flight = None
                if outcome is not None:
                    done = [outcome]
                    batch.outcomes.append(outcome)
        except asyncio.CancelledError:
            if in_flight is not None:
                reply = "process stopped while sending; not resent (RFC 1047)"
                done.append(outbox.Outcome(in_flight, DeliveryState.UNCERTAIN, reply))
            claims.record_soon(done)
            raise
        await claims.record(done)

    async def _send_one(
        self, conn: Bind, claimed: outbox.Claimed, mail: DigestMail, batch: _Batch
    ) -> outbox.Outcome | None:
        """Hand one claimed message to the transport; None when the transport failed as a whole."""
        self._tries[claimed.id] = self._tries.get(claimed.id, 0) + 1
        try:
            # VERP when [bounces] address is set: the bounce names this delivery.
            sender = envelope_sender(self.config, claimed.id, secret=self.composer.secret)
            result = await self.transport.send(sender, mail.subscriber.email, mail.message)
        except DeliveryError as exc:  # raised before DATA: certainly not sent
            batch.fatal.append(exc)
            self._tries[claimed.id] -= 1
            outbox.release(conn, [claimed], self.clock(), f"not sent: {exc}")
            return None
        except Exception as exc:  # the transport broke its contract: the message may have gone out
            log.error("sending to %s failed unexpectedly: %r", mail.subscriber.email, exc)
            reply = f"unexpected error while sending: {exc!r}"
            return outbox.Outcome(claimed, DeliveryState.UNCERTAIN, reply)
        return self._outcome(claimed, mail, result)

    def _outcome(self, c: outbox.Claimed, mail: DigestMail, result: SendOutcome) -> outbox.Outcome:
        now = self.clock()
        reply = f"{result.code or ''} {result.reply}".strip()
        if result.status == "sent":
            return outbox.Outcome(
                c, DeliveryState.SENT, reply, delivered=mail.shown, message_id=mail.message_id
            )
        if result.status == "uncertain":
            return outbox.Outcome(c, DeliveryState.UNCERTAIN, reply, message_id=mail.message_id)
        if result.status == "permanent":
            return outbox.Outcome(c, DeliveryState.FAILED, reply, permanent_failure=True)
        deadline = (c.first_attempt_at or now) + timedelta(hours=self.config.smtp.retry_hours)
        if now >= deadline:
            return outbox.Outcome(c, DeliveryState.FAILED, f"gave up after {c.attempts} attempts: {reply}")
        next_at = now + outbox.retry_backoff(c.attempts, self.options.retry_base_s)
        return outbox.Outcome(c, DeliveryState.RETRY, reply, next_attempt_at=min(next_at, deadline))
