"""The send loop as an object: claim each due outbox row as it goes to the server, send it, record it.

A row moves to ``sending`` right before its message is handed to the transport (at most ``pool_size`` at a
time), so a process killed at any moment leaves only the messages really in flight as ``sending`` (then
``uncertain``); the rest is still ``pending`` for the next run. ``sent`` is recorded with the papers the mail
showed, in one transaction.

Temporary failures: a row is tried at most ``smtp.max_attempts`` times within one run (the in-run retries
wait for their backoff while it is due within ``in_run_retry_window``); after that it stays ``retry`` for
later runs, until ``smtp.retry_hours`` after its first attempt, when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from digest import likes
from digest.clock import Clock, utc_now
from digest.compose import Composer, DigestMail
from digest.config import Config
from digest.errors import DeliveryError
from digest.mailer import SendOutcome, Transport
from digest.models import DeliveryState, Paper, RunReport, SubscriberStatus
from digest.outgoing import envelope_sender
from digest.rules import BatchMatcher
from digest.store import outbox
from digest.store.db import Bind, Engine, held_connections
from digest.store.lookups import papers_by_ids, subscribers_by_ids
from digest.store.papers import delivered_ids

log = logging.getLogger("digest.delivery")

Progress = Callable[[int, int], None]

#: Within one run, a temporary failure is retried when its next attempt is due within this long.
IN_RUN_RETRY_WINDOW = timedelta(minutes=5)


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
    #: The subscriber ids a send-time slot plans (None: everyone due on the date, as ``digest run``).
    audience: frozenset[int] | None = None
    #: Fetch the source before planning new rows (a send-time slot plans from stored papers).
    fetch: bool = True

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


Job = tuple[outbox.Due, DigestMail]


@dataclass
class _Batch:
    """One batch in flight: its messages, the claims handed to the transport, what came of them."""

    jobs: list[Job] = field(default_factory=list)
    handed: dict[int, outbox.Claimed] = field(default_factory=dict)  # row id -> claim, inside transport.send
    outcomes: list[outbox.Outcome] = field(default_factory=list)
    fatal: list[DeliveryError] = field(default_factory=list)
    settled: int = 0  # rows moved straight to a final state (skipped, failed to render)


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
        self.composer = Composer.for_config(config)
        self._papers: dict[str, Paper] = {}
        self._matcher: BatchMatcher | None = None
        self._matcher_key: frozenset[str] = frozenset()
        #: Attempts made in this run, per row: past smtp.max_attempts a row waits for a later run.
        self._tries: dict[int, int] = {}

    async def deliver(self, run_ids: Sequence[int], run_date: date) -> None:
        """Send in batches until nothing is due, waiting for in-run retries that are due soon.

        Raises DeliveryError when the transport fails as a whole (nothing of the failing message was sent).
        """
        opts = self.options
        batch_size = opts.batch_size or max(8, 4 * self.config.smtp.pool_size)
        total, done, cursor = outbox.count_due(self.engine, run_ids), 0, 0
        with held_connections(self.engine) as (conn, claims):
            while not opts.stopping:
                now = self.clock()
                rows = outbox.due_deliveries(conn, run_ids, now, batch_size, after_id=cursor)
                if rows:
                    cursor = rows[-1].id
                    rows = [r for r in rows if self._tries.get(r.id, 0) < self.config.smtp.max_attempts]
                elif cursor:
                    cursor = 0  # end of a pass: start again from the top for retries that came due
                    continue
                else:
                    due = outbox.next_retry_at(conn, run_ids, exclude=self._exhausted())
                    if due is None or due - now > opts.in_run_retry_window:
                        return
                    await opts.pause(max(0.0, (due - now).total_seconds()))
                    continue
                if not rows:
                    continue
                batch = await self._send_batch(conn, claims, rows, run_date)
                recorded = outbox.record_outcomes(
                    conn, batch.outcomes, self.clock(), hard_bounce_limit=self.config.smtp.hard_bounce_limit
                )
                self.report.bounced += len(recorded.bounced)
                done += batch.settled + sum(1 for o in batch.outcomes if o.state != DeliveryState.RETRY)
                if opts.progress:
                    opts.progress(min(done, total), total)

    def _exhausted(self) -> set[int]:
        limit = self.config.smtp.max_attempts
        return {row_id for row_id, tries in self._tries.items() if tries >= limit}

    async def _send_batch(self, conn: Bind, claims: Bind, rows: list[outbox.Due], run_date: date) -> _Batch:
        """Render the batch, then claim and send each row only as it goes to the server."""
        batch = self._compose_batch(conn, rows, run_date)
        # At most pool_size messages are inside the transport at a time; the others wait here unclaimed,
        # where a stop (or a cancellation) leaves them pending and untouched.
        gate = asyncio.Semaphore(self.config.smtp.pool_size)
        tasks = [asyncio.ensure_future(self._send_one(conn, claims, gate, job, batch)) for job in batch.jobs]
        try:
            results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            self._record_cancelled(conn, tasks, batch)
            raise
        for (row, mail), res in zip(batch.jobs, results, strict=True):
            if isinstance(res, outbox.Outcome):
                batch.outcomes.append(res)
            elif isinstance(res, BaseException) and row.id in batch.handed:
                log.error("sending to %s failed unexpectedly: %r", mail.subscriber.email, res)
                reply = f"unexpected error while sending: {res!r}"
                batch.outcomes.append(outbox.Outcome(batch.handed[row.id], DeliveryState.UNCERTAIN, reply))
        if batch.fatal:
            limit = self.config.smtp.hard_bounce_limit
            outbox.record_outcomes(conn, batch.outcomes, self.clock(), hard_bounce_limit=limit)
            raise batch.fatal[0]
        return batch

    def _compose_batch(self, conn: Bind, rows: list[outbox.Due], run_date: date) -> _Batch:
        """Each row's mail; rows with nothing to send (unsubscribed, nothing left, render failed) settle."""
        subs = subscribers_by_ids(self.engine, [r.subscriber_id for r in rows])
        # Last guard before sending: a paper already delivered to this person is never sent again.
        sent_before = delivered_ids(self.engine, list(subs), sorted({p for r in rows for p in r.paper_ids}))
        matcher = self._matcher_for(rows)
        batch, now = _Batch(), self.clock()

        def settle(row: outbox.Due, state: DeliveryState, reply: str) -> None:
            # Straight to the final state (conditionally): no mail is involved, so it never passes `sending`.
            batch.settled += outbox.settle(conn, row, state, reply, now)

        for row in rows:
            sub = subs.get(row.subscriber_id)
            if sub is None or sub.status != SubscriberStatus.ACTIVE:
                # An unsubscribe (or pause, or deletion) takes effect at once, even for a planned digest.
                settle(
                    row, DeliveryState.SKIPPED, f"not sent: subscriber is {sub.status if sub else 'deleted'}"
                )
                continue
            already = sent_before.get(sub.id, set())
            allowed = {p for p in row.paper_ids if p in self._papers and p not in already}
            day = row.run_date or run_date  # a left-over row of an earlier run keeps its own date
            try:
                mail = None
                if allowed or day == run_date:  # no "nothing new" mail for a day that is over
                    matches = [m for m in matcher.select(sub.rules) if m.paper.id in allowed]
                    if matches or not allowed:
                        mail = self.composer.compose(sub, matches, day, now)
            except Exception as exc:  # one bad paper or template never stops the run
                log.exception("could not render the digest for subscriber %d", row.subscriber_id)
                settle(row, DeliveryState.FAILED, f"render failed: {type(exc).__name__}: {exc}")
                continue
            if mail is None:
                settle(row, DeliveryState.SKIPPED, "not sent: no matching papers left")
                continue
            batch.jobs.append((row, mail))
        return batch

    def _matcher_for(self, rows: list[outbox.Due]) -> BatchMatcher:
        """One matcher over the papers of the rows seen so far, so rules and explanations are computed once."""
        missing = {pid for r in rows for pid in r.paper_ids if pid not in self._papers}
        if missing:
            self._papers.update({p.id: p for p in papers_by_ids(self.engine, sorted(missing))})
        key = frozenset(self._papers)
        if self._matcher is None or key != self._matcher_key:
            papers = sorted(self._papers.values(), key=lambda p: p.id)
            # The plan matched like: rules too: without their index a like-only paper would vanish here.
            scores = likes.scores_for(self.config, self.engine, papers)
            self._matcher, self._matcher_key = BatchMatcher(papers, likes=scores), key
        return self._matcher

    async def _send_one(
        self, conn: Bind, claims: Bind, gate: asyncio.Semaphore, job: Job, batch: _Batch
    ) -> outbox.Outcome | None:
        row, mail = job
        async with gate:
            if self.options.stopping or batch.fatal:
                return None
            claimed = outbox.claim_one(claims, row, self.clock())
            if claimed is None:
                return None  # another process claimed it first
            batch.handed[row.id] = claimed
            self._tries[row.id] = self._tries.get(row.id, 0) + 1
            try:
                # VERP when [bounces] address is set: the bounce names this delivery.
                sender = envelope_sender(self.config, row.id, secret=self.composer.secret)
                result = await self.transport.send(sender, mail.subscriber.email, mail.message)
            except DeliveryError as exc:  # raised before DATA: certainly not sent
                batch.fatal.append(exc)
                self._tries[row.id] -= 1
                outbox.release(conn, [claimed], self.clock(), f"not sent: {exc}")
                return None
        return self._outcome(claimed, mail, result)

    def _record_cancelled(
        self, conn: Bind, tasks: Sequence[asyncio.Future[outbox.Outcome | None]], batch: _Batch
    ) -> None:
        """The run was cancelled mid-batch: record what is known before the cancellation goes on.

        Finished sends are recorded as usual; a message never handed to the transport was never claimed and
        stays pending; one cancelled inside the transport may or may not have reached the server: uncertain
        (RFC 1047). (gather has already cancelled the unfinished tasks.)
        """
        for (row, _mail), task in zip(batch.jobs, tasks, strict=True):
            finished = task.done() and not task.cancelled()
            error = task.exception() if finished else None
            res = task.result() if finished and error is None else None
            if res is not None:
                batch.outcomes.append(res)
            elif row.id in batch.handed and not isinstance(error, DeliveryError):
                reply = "process stopped while sending; not resent (RFC 1047)"
                batch.outcomes.append(outbox.Outcome(batch.handed[row.id], DeliveryState.UNCERTAIN, reply))
        limit = self.config.smtp.hard_bounce_limit
        outbox.record_outcomes(conn, batch.outcomes, self.clock(), hard_bounce_limit=limit)

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
