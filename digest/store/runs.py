"""Runs: one ``run`` row per date is the lock of that date's digest.

- One live owner at a time; a run whose owner died (or stopped writing heartbeats) is taken over.
- A row left in ``sending`` by a dead owner becomes ``uncertain`` (RFC 1047): reported, never resent blindly.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.clock import maybe_utc
from digest.errors import RunLockedError, StoreError
from digest.models import DeliveryState, RunStatus
from digest.store.db import Bind, transaction
from digest.store.tables import delivery, run

#: The reply recorded for a row that was in flight when its process stopped.
UNCERTAIN_REPLY = "process stopped while sending; not resent (RFC 1047)"

#: A run whose owner has not written a heartbeat for this long is considered dead.
STALE_AFTER = timedelta(minutes=3)


_NONCE = uuid.uuid4().hex[:8]


def this_owner() -> str:
    """``host:pid:nonce``: the nonce tells a restarted process (same host name, same pid, e.g. pid 1 in a
    container) from the one that died holding a run."""
    return f"{socket.gethostname()}:{os.getpid()}:{_NONCE}"


def _owner_alive(owner: str | None) -> bool:
    """False when the owner is a process on this host that no longer exists."""
    if not owner or ":" not in owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) == 3 and not parts[1].isdigit():  # a host name with a colon, no nonce
        parts = owner.rsplit(":", 1)
    host, pid = parts[0], parts[1]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the heartbeat can tell
    if int(pid) == os.getpid():
        return owner == this_owner()  # our pid, but an earlier process's nonce: that one is gone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunClaim:
    id: int
    run_date: date
    planned: bool
    finished: bool  # the run had already finished: nothing new to send
    took_over: bool


def claim_run(
    engine: sa.Engine, run_date: date, now: datetime, owner: str | None = None, *, reopen: bool = False
) -> RunClaim:
    """Take the run for ``run_date``; RunLockedError while a live process holds it.

    ``reopen``: a finished run is taken again (a later send-time slot has subscribers of that date to add).
    """
    owner = owner or this_owner()
    for _ in range(3):
        with engine.begin() as conn:
            row = conn.execute(sa.select(run).where(run.c.run_date == run_date)).mappings().first()
            if row is None:
                new_id = _insert_run(conn, run_date, owner, now)
                if new_id is None:
                    continue  # another process created it first: read it again
                return RunClaim(new_id, run_date, planned=False, finished=False, took_over=False)
            if row["status"] == RunStatus.DONE and not reopen:
                return RunClaim(row["id"], run_date, planned=True, finished=True, took_over=False)
            if row["status"] == RunStatus.DONE:
                if not _reopen(conn, row["id"], owner, now):
                    continue
                return RunClaim(row["id"], run_date, planned=True, finished=False, took_over=False)
            heartbeat = maybe_utc(row["heartbeat_at"])
            if (
                row["status"] == RunStatus.RUNNING
                and row["owner"] != owner
                and _owner_alive(row["owner"])
                and heartbeat is not None
                and now - heartbeat < STALE_AFTER
            ):
                raise RunLockedError(
                    f"the run for {run_date} is in progress in another process ({row['owner']}); nothing to do here"
                )
            # Failed, unfinished, or held by a dead process: take it over with a conditional update.
            taken = conn.execute(
                run.update()
                .where(run.c.id == row["id"], run.c.status == row["status"], _same(run.c.owner, row["owner"]))
                .values(status=RunStatus.RUNNING, owner=owner, heartbeat_at=now, error=None)
            ).rowcount
            if taken != 1:
                continue
            # Whatever the dead owner left in flight may or may not have reached the server.
            conn.execute(
                delivery.update()
                .where(delivery.c.run_id == row["id"], delivery.c.state == DeliveryState.SENDING)
                .values(
                    state=DeliveryState.UNCERTAIN,
                    last_reply=UNCERTAIN_REPLY,
                    updated_at=now,
                )
            )
            return RunClaim(
                row["id"], run_date, planned=row["planned_at"] is not None, finished=False, took_over=True
            )
    raise RunLockedError(f"could not take the run for {run_date}: it changed hands repeatedly")


def _insert_run(conn: sa.Connection, run_date: date, owner: str, now: datetime) -> int | None:
    values = {"run_date": run_date, "status": RunStatus.RUNNING, "owner": owner}
    try:
        with conn.begin_nested():
            new_id = conn.execute(
                run.insert().values(**values, started_at=now, heartbeat_at=now, papers_fetched=0)
            ).inserted_primary_key
    except sa.exc.IntegrityError:
        return None
    assert new_id is not None
    return int(new_id[0])


def _reopen(conn: sa.Connection, run_id: int, owner: str, now: datetime) -> bool:
    taken = conn.execute(
        run.update()
        .where(run.c.id == run_id, run.c.status == RunStatus.DONE)
        .values(status=RunStatus.RUNNING, owner=owner, heartbeat_at=now, error=None)
    ).rowcount
    return bool(taken == 1)


def _same(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def heartbeat(bind: Bind, run_id: int, now: datetime, owner: str | None = None) -> None:
    """Tell other processes this run is alive (only while ``owner`` still holds it)."""
    query = run.update().where(run.c.id == run_id, run.c.status == RunStatus.RUNNING)
    if owner is not None:
        query = query.where(run.c.owner == owner)
    try:
        with transaction(bind) as conn:
            conn.execute(query.values(heartbeat_at=now))
    except sa.exc.SQLAlchemyError as exc:  # a busy database must not kill the run: the caller logs it
        raise StoreError(f"could not write the run heartbeat: {exc}") from exc


def finish_run(
    engine: sa.Engine,
    run_id: int,
    status: RunStatus,
    now: datetime,
    *,
    owner: str | None = None,
    report: dict[str, Any] | None = None,
) -> bool:
    """Close the run; with ``owner``, only if that process still holds it (False when it lost the run).

    ``report`` (RunReport.to_json()) is kept with the run, and gives its ``error``; a run closed without an
    error also records the ``papers_fetched`` of the report.
    """
    error = (report or {}).get("error")
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now, "error": error}
    if report is not None:
        values["report"] = report
        if error is None and "papers_fetched" in report:
            values["papers_fetched"] = report["papers_fetched"]
    query = run.update().where(run.c.id == run_id)
    if owner is not None:  # only while this process still holds the run
        query = query.where(run.c.owner == owner, run.c.status == RunStatus.RUNNING)
    with engine.begin() as conn:
        return bool(conn.execute(query.values(**values)).rowcount)


#: A row in ``sending`` this long is no longer in anybody's hands. Rows of a dead process's own run are
#: recovered at once (recover_abandoned); this sweep only catches rows of older runs it was retrying, so it
#: can wait far longer than any batch takes, even at a slow rate limit.
SENDING_ABANDONED_AFTER = timedelta(hours=6)


def recover_abandoned(engine: sa.Engine, now: datetime, owner: str) -> int:
    """Runs held by dead processes become ``interrupted`` (their in-flight rows ``uncertain``); so do rows
    left in ``sending`` long ago by any process. Later runs then finish what those runs left pending."""
    with engine.begin() as conn:
        running = conn.execute(
            sa.select(run.c.id, run.c.owner, run.c.heartbeat_at).where(
                run.c.status == RunStatus.RUNNING, run.c.owner != owner
            )
        ).all()
    count = 0
    for run_id, other, beat in running:
        beat = maybe_utc(beat)
        if _owner_alive(other) and beat is not None and now - beat < STALE_AFTER:
            continue
        with engine.begin() as conn:
            taken = conn.execute(
                run.update()
                .where(run.c.id == run_id, run.c.status == RunStatus.RUNNING, _same(run.c.owner, other))
                .values(status=RunStatus.INTERRUPTED, error=f"the process {other} stopped without finishing")
            ).rowcount
            if taken:
                count += 1
                conn.execute(
                    delivery.update()
                    .where(delivery.c.run_id == run_id, delivery.c.state == DeliveryState.SENDING)
                    .values(state=DeliveryState.UNCERTAIN, last_reply=UNCERTAIN_REPLY, updated_at=now)
                )
    with engine.begin() as conn:
        conn.execute(
            delivery.update()
            .where(
                delivery.c.state == DeliveryState.SENDING,
                delivery.c.updated_at < now - SENDING_ABANDONED_AFTER,
            )
            .values(state=DeliveryState.UNCERTAIN, last_reply=UNCERTAIN_REPLY, updated_at=now)
        )
    return count


def papers_fetched(engine: sa.Engine, run_id: int) -> int:
    """How many papers the run's fetch stored (a taken-over run reports what its first owner fetched)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(run.c.papers_fetched).where(run.c.id == run_id)).scalar() or 0)
