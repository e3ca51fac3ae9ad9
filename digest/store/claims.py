"""Claims and outcomes in groups, off the event loop: what bounds the rows a killed process leaves ``sending``.

Each connection slot of the delivery loop (a *sender*) claims a row (``pending|retry -> sending``) right before
its message goes to the server, and hands its outcome to the batcher together with its next claim. ONE
transaction records the outcomes and makes the claims of every sender waiting at that moment. So at any
committed moment a sender has at most one row ``sending`` (what a SIGKILL leaves ``uncertain``: at most
``pool_size`` rows per process), and senders that free up together still share one transaction.

One claim per message on the event loop blocked it for a round trip to PostgreSQL, or a SQLite write
transaction, and the other connections' replies waited meanwhile; here the statements run in a worker thread,
and every request made while one is in flight joins the next transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from digest.store.bulk import record_and_claim
from digest.store.db import transaction
from digest.store.outbox import Claimed, Due, Outcome, claim_rows, claimed_rows, outcome_rows, write_outcomes

__all__ = ["ClaimBatcher"]


@dataclass
class _Request:
    row: Due | None  # None: only record
    done: Sequence[Outcome]
    future: asyncio.Future[Claimed | None]


class ClaimBatcher:
    """``await batcher.claim(row, done)``: records ``done`` (the sender's finished messages) and claims ``row``
    in one transaction; the Claimed row, or None when another process got it first.

    ``conn`` is a connection used only by this batcher (from one thread at a time); on PostgreSQL it is made
    AUTOCOMMIT (when no transaction is open on it), so that a hand-over is one statement and one round trip
    (``bulk.record_and_claim``); the rare group with a hard bounce to count is one transaction on another
    connection of the engine. Call ``await batcher.aclose()`` before closing it. A request whose caller is cancelled is still carried out (its
    outcomes must be recorded); rows claimed for such a caller are kept in ``orphans``: the caller gives them
    back (outbox.release), since nothing was sent for them. ``bounced``: subscribers the recorded hard bounces
    marked bounced.
    """

    def __init__(
        self, conn: sa.Connection, clock: Callable[[], datetime], *, hard_bounce_limit: int = 3
    ) -> None:
        self.conn = conn
        self.clock = clock
        self.hard_bounce_limit = hard_bounce_limit
        self.orphans: list[Claimed] = []
        self.bounced: list[int] = []
        self.statements = 0  # transactions, each one claim statement and the outcome writes
        self._waiting: list[_Request] = []
        self._drain: asyncio.Task[None] | None = None
        self._one_statement = conn.dialect.name == "postgresql"
        if self._one_statement and not conn.in_transaction():
            conn.execution_options(isolation_level="AUTOCOMMIT")
        # Where a group that needs several statements runs them: never on an AUTOCOMMIT connection, whose
        # statements would each commit alone.
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        self._transactions: sa.Engine | sa.Connection = conn.engine if autocommit else conn

    async def claim(self, row: Due, done: Sequence[Outcome] = ()) -> Claimed | None:
        """Record ``done`` and claim ``row`` together (see the class)."""
        future = self._submit(row, done)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._orphaned)
            raise

    async def record(self, done: Sequence[Outcome]) -> None:
        """Record ``done`` (with the claims of the senders waiting now)."""
        if not done:
            return
        future = self._submit(None, done)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_retrieve)
            raise

    def record_soon(self, done: Sequence[Outcome]) -> None:
        """Record ``done`` without waiting (a cancelled sender); ``aclose`` waits for it."""
        if done:
            self._submit(None, done).add_done_callback(_retrieve)

    def _submit(self, row: Due | None, done: Sequence[Outcome]) -> asyncio.Future[Claimed | None]:
        future: asyncio.Future[Claimed | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Request(row, done, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._run())
        return future

    def _orphaned(self, future: asyncio.Future[Claimed | None]) -> None:
        if not future.cancelled() and future.exception() is None and (claimed := future.result()) is not None:
            self.orphans.append(claimed)

    def _write(self, group: list[_Request], now: datetime) -> tuple[dict[int, Claimed], list[int]]:
        """The outcomes first, then the claims, atomically (runs in the worker thread)."""
        done = [o for r in group for o in r.done]
        rows = [r.row for r in group if r.row is not None]
        if self._one_statement and not any(o.permanent_failure for o in done):
            won = record_and_claim(self.conn, outcome_rows(done, now), [r.seen for r in rows], now)
            return claimed_rows(rows, won, now), []
        with transaction(self._transactions) as conn:
            recorded = write_outcomes(conn, done, now, hard_bounce_limit=self.hard_bounce_limit)
            return claim_rows(conn, rows, now), recorded.bounced

    async def _run(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                won, bounced = await asyncio.to_thread(self._write, group, self.clock())
            except asyncio.CancelledError:
                for request in group:
                    request.future.cancel()
                raise
            except Exception as exc:
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self.statements += 1
            self.bounced.extend(bounced)
            for request in group:
                claimed = won.get(request.row.id) if request.row is not None else None
                if not request.future.done():
                    request.future.set_result(claimed)
                elif claimed is not None:
                    self.orphans.append(claimed)

    async def aclose(self) -> None:
        """Wait until every request made so far is carried out (its thread holds the connection)."""
        while (drain := self._drain) is not None and not drain.done():
            await asyncio.wait([drain])

    def take_bounced(self) -> list[int]:
        """The subscribers marked bounced since the last call."""
        bounced, self.bounced = self.bounced, []
        return bounced


def _retrieve(future: asyncio.Future[Claimed | None]) -> None:
    # Nobody awaits a record_soon: its error (the rows stay `sending`, later uncertain) must not be logged
    # as "never retrieved" at garbage collection; the run's own error says what went wrong.
    if not future.cancelled():
        future.exception()
