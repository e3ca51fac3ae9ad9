"""Building blocks for pipeline tests: a config pointing at loopback servers, subscribers, mail reading."""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from digest.config import Config
from digest.config_load import parse_config
from digest.models import SubscriberStatus
from digest.store.subscribers import add_subscriber
from digest.store.tables import delivered_paper, delivery, subscriber

DAY = date(2026, 8, 21)  # api_daily_papers_date-2026-08-21.json: 17 papers
NOW = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)
SECRET = secrets.token_urlsafe(48)


def config_data(tmp_path: Path, *, hf_url: str, smtp_port: int, db_url: str | None = None) -> dict[str, Any]:
    """The config (as TOML data) of a run against loopback servers: the HF snapshot and a test SMTP server."""
    key = tmp_path / "secret_key"
    key.write_text(SECRET)
    return {
        "source": {"base_url": hf_url, "lookback_days": 1, "deadline_s": 20},
        "database": {"url": db_url or f"sqlite:///{tmp_path / 'digest.db'}"},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "pool_size": 2,
            "timeout_s": 5,
            "from": "Paper Digest <digest@example.org>",
        },
        "web": {"base_url": "https://digest.example.org"},
        "security": {"secret_key_env": "DIGEST_TEST_UNSET_KEY", "secret_key_file": str(key)},
        "digest": {"admin_email": "ops@example.org", "list_id": "test.example.org"},
    }


def make_config(
    tmp_path: Path, *, hf_url: str, smtp_port: int, db_url: str | None = None, **sections: dict[str, Any]
) -> Config:
    data = config_data(tmp_path, hf_url=hf_url, smtp_port=smtp_port, db_url=db_url)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, tmp_path / "config.toml")


def subscribe(engine: sa.Engine, email_: str, *rules: str, **kwargs: Any) -> int:
    sub = add_subscriber(engine, email_, list(rules), now=NOW, status=SubscriberStatus.ACTIVE, **kwargs)
    return sub.id


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def mails_to(messages: Sequence[Any], address: str) -> list[EmailMessage]:
    return [parse(m.data) for m in messages if address in m.recipients]


def delivered(engine: sa.Engine, address: str) -> list[str]:
    q = (
        sa.select(delivered_paper.c.paper_id)
        .join(subscriber, subscriber.c.id == delivered_paper.c.subscriber_id)
        .where(subscriber.c.email == address)
    )
    with engine.connect() as conn:
        return sorted(r for (r,) in conn.execute(q))


def delivery_states(engine: sa.Engine) -> dict[str, list[str]]:
    """Each address's delivery states."""
    return _per_address(engine, delivery.c.state)


def local_dates(engine: sa.Engine) -> dict[str, list[date]]:
    """Each address's delivery dates (their local dates)."""
    return _per_address(engine, delivery.c.local_date)


def _per_address(engine: sa.Engine, column: Any) -> dict[str, list[Any]]:
    q = sa.select(subscriber.c.email, column).join(subscriber, subscriber.c.id == delivery.c.subscriber_id)
    out: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for addr, value in conn.execute(q):
            out.setdefault(addr, []).append(value)
    return out
