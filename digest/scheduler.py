"""APScheduler wiring: the daily cron in the configured zone, the same-day retry, the catch-up on start.

The scheduler only decides *when* and *for which date*; what a run does is the job's business
(``digest.server`` passes one that syncs subscribers and calls ``pipeline.run_digest``). The run date is
the date of the fire time in the configured zone, so a 07:00 Europe/Paris run is the Paris day even
though 07:00 Paris is 05:00 or 06:00 UTC depending on daylight saving time (APScheduler handles DST).

Besides the cron, a light interval job (every ``RETRY_EVERY``) runs today's digest again while it is
unfinished (``incomplete``, ``failed`` or ``interrupted``): SMTP that was down at 07:00 and back at 07:40
gets the digests out at 07:50, not tomorrow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest.clock import utc_now
from digest.config import Config, crontab_for_apscheduler
from digest.errors import ConfigError
from digest.store.db import DatabaseError, Engine
from digest.store.run_status import run_status, run_status_and_heartbeat
from digest.store.runs import STALE_AFTER

log = logging.getLogger("digest.scheduler")

Clock = Callable[[], datetime]
Job = Callable[[date], Awaitable[Any]]
Busy = Callable[[], bool]

JOB_ID = "digest-run"
RETRY_JOB_ID = "digest-retry"
REFRESH_JOB_ID = "source-refresh"
SLOT_JOB_ID = "digest-slot"
#: Send-time slots fire on every quarter hour of UTC, which is a quarter hour in every zone (even +05:45).
SLOT_CRON = "*/15"
#: How often the retry job looks at today's run. Ten minutes: a temporary SMTP outage delays the digests
#: by minutes rather than a day, and an outage that lasts costs a cheap connection attempt (and, for a
#: broken source, one fetch) every ten minutes; the admin alert is still sent once per problem per day.
RETRY_EVERY = timedelta(minutes=10)
#: Run statuses the retry job takes up again. ``done`` is final; ``running`` belongs to whoever runs it.
RETRYABLE = frozenset({"incomplete", "failed", "interrupted"})
#: A fire delayed by up to this long (a busy loop, a suspended VM) still runs; later it is skipped and
#: left to the catch-up on the next start. One hour: a digest that arrives an hour late is still useful.
MISFIRE_GRACE_S = 3600
#: How far back ``last_fire_time`` looks for the previous fire of a cron expression.
_MAX_LOOKBACK = timedelta(days=400)


def make_trigger(config: Config) -> CronTrigger:
    """The CronTrigger of ``[schedule] cron`` in ``[schedule] timezone``; ConfigError when it is invalid."""
    return _cron_trigger(config, "schedule.cron", config.schedule.cron)


def _cron_trigger(config: Config, key: str, crontab: str) -> CronTrigger:
    """The CronTrigger of the crontab at config ``key``, in ``[schedule] timezone``; ConfigError naming the
    key when it is invalid."""
    try:
        return CronTrigger.from_crontab(crontab_for_apscheduler(crontab), timezone=config.schedule.zone)
    except ValueError as exc:
        raise ConfigError([f"{config.path}: {key}: {exc} (got {crontab!r})"]) from None


def _add_cron_job(
    scheduler: AsyncIOScheduler,
    func: Callable[[], Awaitable[Any]],
    trigger: CronTrigger,
    job_id: str,
    name: str,
) -> None:
    """Add a cron job the way every cron job here runs: missed fires coalesce into one, one instance at a
    time, and a fire later than the grace is skipped (the next fire, or the catch-up on start, covers it)."""
    scheduler.add_job(
        func,
        trigger,
        id=job_id,
        name=name,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_S,
        replace_existing=True,
    )


def last_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time of ``trigger`` at or before ``now`` (aware, in the trigger's zone), if any.

    APScheduler 3 only computes the *next* fire time, so this looks forward from a window before ``now``
    that widens until it holds a fire time (a minute for ``* * * * *``, a day for a daily cron...).
    """
    span = timedelta(minutes=2)
    while True:
        last: datetime | None = None
        at = trigger.get_next_fire_time(None, now - span)
        while at is not None and at <= now:
            last = at
            at = trigger.get_next_fire_time(None, at + timedelta(seconds=1))
        if last is not None or span >= _MAX_LOOKBACK:
            return last
        span = min(span * 8, _MAX_LOOKBACK)


def run_date_for(config: Config, fire_time: datetime) -> date:
    """The digest date of a fire time: its date in the configured zone."""
    return fire_time.astimezone(config.schedule.zone).date()


def build_scheduler(
    config: Config,
    job: Job,
    *,
    clock: Clock = utc_now,
    engine: Engine | None = None,
    busy: Busy | None = None,
    retry_every: timedelta = RETRY_EVERY,
) -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started) that calls ``await job(run_date)`` at every fire of the cron.

    ``coalesce``: several missed fires run once; ``max_instances=1``: a fire while the previous run is
    still going is skipped (APScheduler logs a warning). Start it inside the running event loop.

    With an ``engine``, a second job runs every ``retry_every``: when today's run is unfinished
    (``retry_run_date``) and ``busy()`` says no run is in progress in this process, it calls
    ``await job(run_date)`` again (see ``retry_tick``).
    """
    trigger = make_trigger(config)

    async def fire() -> None:
        # APScheduler 3 does not pass the scheduled time to the job: recompute it. The fire may run a
        # little late (misfire grace), so take the latest scheduled time, not the wall clock's date.
        now = clock()
        scheduled = last_fire_time(trigger, now) or now
        run_date = run_date_for(config, scheduled)
        log.info(
            "scheduled run for %s (fire time %s)",
            run_date,
            scheduled.isoformat(),
            extra={"run_date": run_date.isoformat(), "fire_time": scheduled.isoformat()},
        )
        await job(run_date)

    scheduler = AsyncIOScheduler(timezone=config.schedule.zone)
    _add_cron_job(scheduler, fire, trigger, JOB_ID, "daily digest run")
    if engine is not None:
        is_busy: Busy = busy or (lambda: False)

        async def retry() -> None:
            await retry_tick(config, engine, job, busy=is_busy, clock=clock)

        _add_retry_job(scheduler, retry, config.schedule.zone, retry_every)
    return scheduler


def _add_retry_job(
    scheduler: AsyncIOScheduler, retry: Callable[[], Awaitable[None]], zone: ZoneInfo, every: timedelta
) -> None:
    scheduler.add_job(
        retry,
        IntervalTrigger(seconds=every.total_seconds(), timezone=zone),
        id=RETRY_JOB_ID,
        name="same-day retry of an unfinished run",
        coalesce=True,
        # The busy check is the real guard against two runs at once (a tick while a retry is still
        # running returns at once); two instances keep APScheduler from logging a "maximum number of
        # running instances" warning at every tick of a long retry.
        max_instances=2,
        # A tick delayed by a busy loop still counts; a tick is cheap and coalesced.
        misfire_grace_time=None,
        replace_existing=True,
    )


def add_refresh_job(
    scheduler: AsyncIOScheduler, config: Config, refresh: Callable[[], Awaitable[Any]]
) -> None:
    """Run ``await refresh()`` at every fire of ``[source] refresh`` (in ``[schedule] timezone``): the
    source is fetched in its own job, so a send never waits for it. A fire missed by more than the grace
    is skipped (the next one catches up: a refresh fetches every day since the last good fetch)."""
    trigger = _cron_trigger(config, "source.refresh", config.source.refresh)
    _add_cron_job(scheduler, refresh, trigger, REFRESH_JOB_ID, "source refresh")


async def retry_tick(
    config: Config, engine: Engine, job: Job, *, busy: Busy, clock: Clock = utc_now
) -> date | None:
    """One look of the retry job: run today's unfinished run again; the date it retried, or None.

    Nothing happens while a run is in progress in this process (``busy()``), before today's scheduled
    time, for a ``done`` run, or when the database cannot be read (logged; the next tick tries again).
    """
    if busy():
        return None
    now = clock()
    try:
        due = retry_run_date(config, engine, now)
    except DatabaseError as exc:
        log.warning("retry check skipped: the database cannot be read (%s)", exc.__class__.__name__)
        return None
    if due is None:
        return None
    day, status = due
    log.info(
        "retrying the %s run for %s",
        status,
        day,
        extra={"run_date": day.isoformat(), "previous_status": status},
    )
    # No await between busy() and here: the job takes the run lock before another tick can look.
    await job(day)
    return day


def next_fire_time(config: Config, now: datetime) -> datetime | None:
    """When the cron fires next after ``now`` (for logs and the status line)."""
    at: datetime | None = make_trigger(config).get_next_fire_time(None, now + timedelta(seconds=1))
    return at


def todays_run_date(config: Config, now: datetime) -> date | None:
    """Today's run date (in the configured zone) once today's scheduled time has passed, else None."""
    fired = last_fire_time(make_trigger(config), now)
    if fired is None:
        return None
    day = run_date_for(config, fired)
    return day if day == run_date_for(config, now) else None


def retry_run_date(config: Config, engine: Engine, now: datetime) -> tuple[date, str] | None:
    """(today's run date, its status) when the retry job should run it again, else None.

    Due when today's scheduled time has passed and today's run row exists with a status in
    ``RETRYABLE``. No row means the cron fire has not happened in this process (catch-up on start and
    the cron own that case); a ``done`` run is never repeated; a ``running`` one is someone's run now.
    """
    day = todays_run_date(config, now)
    if day is None:
        return None
    row = run_status_and_heartbeat(engine, day)
    if row is None:
        return None
    status, beat = row
    # A process that died holding the run stops beating: its run is retried too (run_digest recovers it).
    if status == "running" and beat is not None and now - beat >= STALE_AFTER:
        return day, "abandoned"
    if status not in RETRYABLE:
        return None
    return day, status


def missed_run_date(config: Config, engine: Engine, now: datetime) -> date | None:
    """The date to catch up on start, or None.

    Catch-up is due when the latest scheduled fire before ``now`` fell on today (in the configured zone)
    and that date's run has not finished: there is no ``run`` row for it (the service was down at fire
    time), or the row was left unfinished (stopped mid-run, failed because SMTP or the source was down).
    A finished (``done``) run is never repeated, and a run that another live process holds is refused
    by the run row itself (``run_digest`` reports it as locked), so two processes never both send.
    Yesterday's missed run is not replayed: today's run looks back ``lookback_days`` and picks it up.
    """
    day = todays_run_date(config, now)
    if day is None or run_status(engine, day) == "done":
        return None
    return day


def add_slot_job(scheduler: AsyncIOScheduler, slot: Callable[[], Awaitable[Any]]) -> None:
    """Add the send-time slot: ``await slot()`` on every quarter hour (subscribers with their own send time).

    Coalesced with one instance: slots missed during downtime run once, and that one slot sends every
    missed subscriber once (a subscriber's digest is keyed by their local date, not by the slot).
    """
    trigger = CronTrigger(minute=SLOT_CRON, timezone=ZoneInfo("UTC"))
    _add_cron_job(scheduler, slot, trigger, SLOT_JOB_ID, "send-time slot")
