"""Send-time slots: which subscribers a slot (every 15 minutes, and the cron) plans and sends, by date.

The time logic is ``digest.sendtimes`` (pure, ``now`` passed in); this module reads the schedules and the
outbox rows it needs and hands each local date's audience to the run (``RunOptions.audience``).

A slot is named by its quarter hour (``slot_time``): with workers, ``serve`` queues one plan job per local
date carrying only that instant, and the worker recomputes the audience from it (``slot_audience``), so a
job stays a few bytes whatever the audience and every ``serve`` process names the same slot the same way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from digest.config import Config
from digest.sendtimes import STEP_MINUTES, candidate_dates, due_date, slot_groups
from digest.store.db import Engine
from digest.store.send_slots import active_schedules, planned_pairs


def slot_audiences(
    config: Config, engine: Engine, now: datetime, cron_date: date | None = None
) -> dict[date, frozenset[int]]:
    """The subscribers due at ``now`` who have no digest for their local date yet, by local date (oldest
    first). Subscribers without a send time are included only when ``cron_date`` (today's cron date, once
    the cron has fired) is given."""
    days = set(candidate_dates(now))
    if cron_date is not None:
        days.add(cron_date)
    already = planned_pairs(engine, days)
    groups = slot_groups(active_schedules(engine), now, config.schedule.zone, cron_date, already)
    return {day: frozenset(ids) for day, ids in sorted(groups.items())}


def slot_time(now: datetime) -> datetime:
    """The quarter hour (UTC) of the slot that fires at ``now``. Send times sit on quarter hours (a DST gap
    moves one to the end of the gap, also a quarter hour), so the audience at it is the audience at ``now``;
    two processes firing the same slot a few milliseconds apart name it alike."""
    at = now.astimezone(UTC).replace(second=0, microsecond=0)
    return at.replace(minute=at.minute - at.minute % STEP_MINUTES)


def slot_audience(config: Config, engine: Engine, slot_at: datetime, run_date: date) -> frozenset[int]:
    """The audience of the slot at ``slot_at`` for local date ``run_date``: who is due then and has no
    digest for that date yet (empty when a run planned them meanwhile)."""
    return slot_audiences(config, engine, slot_at).get(run_date, frozenset())


def run_audience(config: Config, engine: Engine, run_date: date, now: datetime) -> frozenset[int]:
    """Who a cron-time run for ``run_date`` may plan at ``now``: everyone who follows the cron, and those
    with their own send time whose local date is ``run_date`` and whose time has come."""
    zone = config.schedule.zone
    return frozenset(
        s.id
        for s in active_schedules(engine)
        if s.send_time is None or due_date(s, now, zone, None) == run_date
    )
