"""Send-time slots: which subscribers a slot (every 15 minutes, and the cron) plans and sends, by date.

The time logic is ``digest.sendtimes`` (pure, ``now`` passed in); this module reads the schedules and the
outbox rows it needs and hands each local date's audience to the run (``RunOptions.audience``).
"""

from __future__ import annotations

from datetime import date, datetime

from digest.config import Config
from digest.sendtimes import candidate_dates, due_date, slot_groups
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


def run_audience(config: Config, engine: Engine, run_date: date, now: datetime) -> frozenset[int]:
    """Who a cron-time run for ``run_date`` may plan at ``now``: everyone who follows the cron, and those
    with their own send time whose local date is ``run_date`` and whose time has come."""
    zone = config.schedule.zone
    return frozenset(
        s.id
        for s in active_schedules(engine)
        if s.send_time is None or due_date(s, now, zone, None) == run_date
    )
