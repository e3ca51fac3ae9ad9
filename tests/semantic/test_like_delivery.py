"""like: rules through a real run (the real model, a local HF snapshot, a real SMTP server, SQLite and
PostgreSQL): the plan only keeps paper ids and the delivery matches again at send time to explain them,
so a paper planned by a like: rule alone must still be sent, with its "similar to" explanation."""

from __future__ import annotations

import email
import email.policy
import secrets
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from digest import likes
from digest.config_load import parse_config
from digest.demo.snapshot_server import SnapshotServer
from digest.mailer import SmtpPool
from digest.models import SubscriberStatus
from digest.pipeline import RunOptions, run_digest
from digest.sources import papers_from_file
from digest.store import db
from digest.store.papers import upsert_papers
from digest.store.subscribers import add_subscriber
from digest.store.tables import delivered_paper

DAY = date(2026, 7, 27)
OLD_DAY_FILE = "api_daily_papers_date-2025-10-15.json"
LIKED = "2510.11057"  # Temporal Alignment Guidance: On-Manifold Sampling in Diffusion Models (2025-10-15)
DIFFUSION_TWIN = "2607.22091"  # Spectral Prior for Reducing Exposure Bias in Diffusion Models (2026-07-27)


def _config(tmp_path: Path, hf_url: str, smtp_port: int, db_url: str) -> Any:
    key = tmp_path / "secret_key"
    key.write_text(secrets.token_urlsafe(48))
    return parse_config(
        {
            "source": {"base_url": hf_url, "lookback_days": 0, "deadline_s": 20},
            "database": {"url": db_url},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "timeout_s": 5},
            "web": {"base_url": "https://digest.example.org"},
            "security": {"secret_key_env": "DIGEST_TEST_UNSET_KEY", "secret_key_file": str(key)},
            "digest": {"admin_email": "ops@example.org", "list_id": "test.example.org"},
            "semantic": {"enabled": True, "threshold": 0.5},
        },
        tmp_path / "config.toml",
    )


async def test_a_paper_planned_by_a_like_rule_alone_is_sent_with_its_similarity_and_a_more_link(
    tmp_path: Path, hf_fixtures: Path, smtp_server: Any, db_url: str
) -> None:
    likes.forget_fetches()
    server = smtp_server()
    with SnapshotServer(hf_fixtures) as hf:
        config = _config(tmp_path, hf.base_url, server.port, db_url)
        engine = db.open_database(config.database_url)
        # The liked paper is older than the window: stored from its own day, so no fetch by id is needed.
        upsert_papers(
            engine, papers_from_file(hf_fixtures / OLD_DAY_FILE), datetime(2025, 10, 15, tzinfo=UTC)
        )
        sub = add_subscriber(
            engine,
            "ada@example.org",
            [f"like:{LIKED}"],
            now=datetime(2026, 7, 1, tzinfo=UTC),
            status=SubscriberStatus.ACTIVE,
        )
        async with SmtpPool(server.settings(pool_size=1)) as pool:
            report = await run_digest(config, engine, DAY, pool, options=RunOptions(retry_base_s=0.05))
    assert report.status == "done", report
    assert report.sent == 1, report
    with engine.connect() as conn:
        sent = set(
            conn.scalars(
                sa.select(delivered_paper.c.paper_id).where(delivered_paper.c.subscriber_id == sub.id)
            )
        )
    assert DIFFUSION_TWIN in sent
    (message,) = [m for m in server.messages if "ada@example.org" in m.recipients]
    mail = email.message_from_bytes(message.data, policy=email.policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "similar to «Temporal Alignment Guidance" in text
    more = [line for line in text.splitlines() if line.startswith("More like this: ")]
    assert more and all(line.startswith("More like this: https://digest.example.org/more/") for line in more)
    assert any(line.endswith(f"/{DIFFUSION_TWIN}") for line in more)
    engine.dispose()
