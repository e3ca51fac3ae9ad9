"""Building blocks for the feedback tests: settings, subscribers, a delivery row, the bounce samples."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from digest.feedback import Settings
from digest.models import SubscriberStatus
from digest.store.subscribers import add_subscriber
from digest.store.tables import delivery, run, subscriber
from digest.tokens import make_bounce_token

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bounces"
NOW = datetime(2026, 11, 4, 15, 0, tzinfo=UTC)
SECRET = secrets.token_urlsafe(48)
BOUNCE_ADDRESS = "bounces@lists.example.org"


def settings(*, soft: float = 5, hard: int = 1) -> Settings:
    return Settings(secret=SECRET, bounce_address=BOUNCE_ADDRESS, soft_threshold=soft, hard_threshold=hard)


def verp(delivery_id: int) -> str:
    return f"bounces+{make_bounce_token(SECRET, delivery_id)}@lists.example.org"


def sample(name: str, delivery_id: int | None = None) -> bytes:
    """A sample from tests/data/bounces, its {VERP} placeholder filled for ``delivery_id``."""
    raw = (SAMPLES / name).read_bytes()
    address = verp(delivery_id) if delivery_id is not None else "someone-else@lists.example.org"
    return raw.replace(b"{VERP}", address.encode())


def add_active(engine: sa.Engine, email: str) -> int:
    return add_subscriber(engine, email, ["diffusion"], now=NOW, status=SubscriberStatus.ACTIVE).id


def add_delivery(engine: sa.Engine, subscriber_id: int, day: date = NOW.date()) -> int:
    """A sent delivery row for the subscriber (as a digest run leaves it)."""
    with engine.begin() as conn:
        run_id = (
            conn.execute(sa.select(run.c.id).where(run.c.run_date == day)).scalar()
            or conn.execute(
                run.insert().values(run_date=day, status="done", started_at=NOW).returning(run.c.id)
            ).scalar_one()
        )
        return int(
            conn.execute(
                delivery.insert()
                .values(
                    run_id=run_id,
                    subscriber_id=subscriber_id,
                    local_date=day,
                    state="sent",
                    attempts=1,
                    updated_at=NOW,
                )
                .returning(delivery.c.id)
            ).scalar_one()
        )


def status_of(engine: sa.Engine, email: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.select(subscriber.c.status).where(subscriber.c.email == email)).scalar_one()
        )
