"""Rows as the pipeline writes them, for the console tests (web and store) and raw inserts in the store tests.

``subscriber_row`` is the one the benchmarks fill their databases with (benchmarks/bench_data.py), so a raw
subscriber insert has one shape everywhere: a column the table gains is added in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# benchmarks/ is a folder of scripts, not a package: appended (never ahead of anything) to share its rows.
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_data import subscriber_row

__all__ = ["add_delivery", "add_run", "set_status", "subscriber_row"]


def add_run(engine: Any, day: Any, now: Any, status: str = "done") -> int:
    """A run row for ``day`` (as the pipeline writes it)."""
    from digest.store.tables import run

    with engine.begin() as conn:
        key = conn.execute(
            run.insert().values(
                run_date=day, status=status, started_at=now, finished_at=now, papers_fetched=4
            )
        ).inserted_primary_key
    return int(key[0])


def add_delivery(engine: Any, run_id: int, subscriber_id: int, state: str, now: Any, **values: Any) -> int:
    from digest.store.tables import delivery, run

    with engine.begin() as conn:
        # As a run writes it: the subscriber's local date is the run's date unless the test says otherwise.
        day = conn.execute(
            run.select().with_only_columns(run.c.run_date).where(run.c.id == run_id)
        ).scalar_one()
        values.setdefault("local_date", day)
        key = conn.execute(
            delivery.insert().values(
                run_id=run_id,
                subscriber_id=subscriber_id,
                state=state,
                attempts=values.pop("attempts", 1),
                paper_ids=values.pop("paper_ids", ["2602.00001"]),
                updated_at=now,
                **values,
            )
        ).inserted_primary_key
    return int(key[0])


def set_status(engine: Any, subscriber_id: int, status: str) -> None:
    """Write a status as a later version might (``complained`` has no enum member yet)."""
    from digest.store.tables import subscriber

    with engine.begin() as conn:
        conn.execute(subscriber.update().where(subscriber.c.id == subscriber_id).values(status=status))
