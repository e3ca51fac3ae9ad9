"""APScheduler wiring: the daily cron in the configured time zone, and the catch-up decision on start.

The scheduler only decides *when* and *for which date*; what a run does is the job's business
(``digest.server`` passes one that syncs subscribers and calls ``pipeline.run_digest``). The run date is
the date of the fire time in the configured zone, so a 07:00 Europe/Paris run is the Paris day even
though 07:00 Paris is 05:00 or 06:00 UTC depending on daylight saving time (APScheduler handles DST).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from digest.config import Config
from digest.errors import ConfigError
from digest.store.tables import run

log = logging.getLogger("digest.scheduler")

Clock = Callable[[], datetime]
Job = Callable[[date], Awaitable[Any]]

JOB_ID = "digest-run"
#: A fire delayed by up to this long (a busy loop, a suspended VM) still runs; later it is skipped and
#: left to the catch-up on the next start. One hour: a digest that arrives an hour late is still useful.
MISFIRE_GRACE_S = 3600
#: How far back ``last_fire_time`` looks for the previous fire of a cron expression.
_MAX_LOOKBACK = timedelta(days=400)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def make_trigger(config: Config) -> CronTrigger:
    """The CronTrigger of ``[schedule] cron`` in ``[schedule] timezone``; ConfigError when it is invalid."""
    try:
        return CronTrigger.from_crontab(config.schedule.cron, timezone=ZoneInfo(config.schedule.timezone))
    except ValueError as exc:
        raise ConfigError([f"{config.path}: schedule.cron: {exc} (got {config.schedule.cron!r})"]) from None


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


def build_scheduler(config: Config, job: Job, *, clock: Clock = utc_now) -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started) that calls ``await job(run_date)`` at every fire of the cron.

    ``coalesce``: several missed fires run once; ``max_instances=1``: a fire while the previous run is
    still going is skipped (APScheduler logs a warning). Start it inside the running event loop.
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
    scheduler.add_job(
        fire,
        trigger,
        id=JOB_ID,
        name="daily digest run",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_S,
        replace_existing=True,
    )
    return scheduler


def next_fire_time(config: Config, now: datetime) -> datetime | None:
    """When the cron fires next after ``now`` (for logs and the status line)."""
    at: datetime | None = make_trigger(config).get_next_fire_time(None, now + timedelta(seconds=1))
    return at


def missed_run_date(config: Config, engine: sa.Engine, now: datetime) -> date | None:
    """The date to catch up on start, or None.

    Catch-up is due when the latest scheduled fire before ``now`` fell on today (in the configured zone)
    and that date's run has not finished: there is no ``run`` row for it (the service was down at fire
    time), or the row was left unfinished (stopped mid-run, failed because SMTP or the source was down).
    A finished (``done``) run is never repeated, and a run that another live process holds is refused
    by the run row itself (``run_digest`` reports it as locked), so two processes never both send.
    Yesterday's missed run is not replayed: today's run looks back ``lookback_days`` and picks it up.
    """
    zone = config.schedule.zone
    fired = last_fire_time(make_trigger(config), now)
    if fired is None:
        return None
    day = fired.astimezone(zone).date()
    if day != now.astimezone(zone).date():
        return None
    with engine.connect() as conn:
        status = conn.execute(sa.select(run.c.status).where(run.c.run_date == day)).scalar()
    if status == "done":
        return None
    return day
