"""The whole bounce loop with a real MTA: our service sends digests through a private Postfix, which accepts
every recipient and bounces two of them later; its DSNs come back over LMTP to the listener `serve` runs.

``UPDATE_SAMPLES=1`` also rewrites tests/data/bounces/postfix-*.eml with the DSNs Postfix wrote.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from feedback_helpers import SAMPLES, SECRET, status_of
from postfix_mta import BOUNCE_DOMAIN, POSTFIX, USERS_DOMAIN, PrivatePostfix

from digest.config import Config
from digest.config_load import parse_config
from digest.demo.snapshot_server import SnapshotServer
from digest.inbox import start_receivers
from digest.mailer import SmtpPool, SmtpSettings
from digest.models import SubscriberStatus
from digest.pipeline import RunOptions, run_digest
from digest.store import db
from digest.store.feedback import list_feedback, raw_message
from digest.store.subscribers import add_subscriber
from digest.store.tables import bounce_score, feedback, subscriber

DAY = date(2026, 8, 21)  # the captured HF day with 17 papers
NOW = datetime(2026, 8, 21, 7, 0, tzinfo=UTC)


@pytest.fixture
def hf(hf_fixtures: Path) -> Iterator[SnapshotServer]:
    with SnapshotServer(hf_fixtures) as server:
        yield server


def config_for(tmp_path: Path, hf_url: str, relay_port: int, lmtp_port: int) -> Config:
    key = tmp_path / "secret_key"
    key.write_text(SECRET)
    return parse_config(
        {
            "source": {"base_url": hf_url, "lookback_days": 0, "deadline_s": 20},
            "database": {"url": f"sqlite:///{tmp_path / 'digest.db'}"},
            "smtp": {
                "host": "127.0.0.1",
                "port": relay_port,
                "security": "none",
                "from": "Paper Digest <digest@example.org>",
            },
            "security": {"secret_key_env": "DIGEST_TEST_UNSET_KEY", "secret_key_file": str(key)},
            "bounces": {"address": f"bounces@{BOUNCE_DOMAIN}", "lmtp_listen": f"127.0.0.1:{lmtp_port}"},
        },
        tmp_path / "config.toml",
    )


async def wait_for_feedback(engine: sa.Engine, count: int, mta: PrivatePostfix, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        with engine.connect() as conn:
            if (conn.execute(sa.select(sa.func.count()).select_from(feedback)).scalar() or 0) >= count:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} bounces over LMTP; Postfix log:\n{mta.log_text()[-4000:]}")


async def test_real_postfix_bounces_come_back_over_lmtp_and_change_the_subscribers(
    tmp_path: Path, hf: SnapshotServer
) -> None:
    if not os.path.exists(POSTFIX):
        if os.environ.get("CI"):
            pytest.fail("postfix is missing: scripts/test installs it")
        pytest.skip("Debian's postfix is not installed (scripts/test installs it)")
    engine = db.open_database(f"sqlite:///{tmp_path / 'digest.db'}")
    listener_config = config_for(tmp_path, hf.base_url, 25, 0)
    receivers = await start_receivers(listener_config, engine, lambda: NOW)
    assert receivers.lmtp_port
    mta = PrivatePostfix(lmtp_port=receivers.lmtp_port)
    await asyncio.to_thread(mta.start)
    try:
        config = config_for(tmp_path, hf.base_url, mta.relay_port, receivers.lmtp_port)
        for user in ("alice", "ghost", "full"):
            add_subscriber(
                engine, f"{user}@{USERS_DOMAIN}", ["agent*"], now=NOW, status=SubscriberStatus.ACTIVE
            )
        async with SmtpPool(SmtpSettings.from_config(config)) as pool:
            report = await run_digest(
                config, engine, DAY, pool, clock=lambda: NOW, options=RunOptions(retry_base_s=0.05)
            )
        assert (report.status, report.sent, report.failed) == ("done", 3, 0), (
            "the relay accepts every recipient"
        )

        await wait_for_feedback(engine, 2, mta)
    finally:
        await asyncio.to_thread(mta.stop)
        await receivers.aclose()

    assert status_of(engine, f"ghost@{USERS_DOMAIN}") == "bounced"  # 550 5.1.1: hard, threshold 1
    assert status_of(engine, f"full@{USERS_DOMAIN}") == "active"  # 452 4.2.2, expired: one soft point
    assert status_of(engine, f"alice@{USERS_DOMAIN}") == "active"
    rows = {f.email: f for f in list_feedback(engine)}
    assert rows[f"ghost@{USERS_DOMAIN}"].kind == "hard" and "5.1.1" in (
        rows[f"ghost@{USERS_DOMAIN}"].reason or ""
    )
    assert rows[f"full@{USERS_DOMAIN}"].kind == "soft" and "4.2.2" in (
        rows[f"full@{USERS_DOMAIN}"].reason or ""
    )
    with engine.connect() as conn:
        # Each DSN named its delivery through the VERP envelope sender Postfix returned it to.
        assert (
            conn.execute(sa.select(sa.func.count()).where(feedback.c.delivery_id.is_not(None))).scalar() == 2
        )
        score = conn.execute(
            sa.select(bounce_score.c.soft_score)
            .join(subscriber, subscriber.c.id == bounce_score.c.subscriber_id)
            .where(subscriber.c.email == f"full@{USERS_DOMAIN}")
        ).scalar()
    assert score == 1.0
    if os.environ.get("UPDATE_SAMPLES"):
        _save_samples(engine, rows)
    engine.dispose()


def _save_samples(engine: sa.Engine, rows: dict[str | None, object]) -> None:
    import re

    for email, name in ((f"ghost@{USERS_DOMAIN}", "user-unknown"), (f"full@{USERS_DOMAIN}", "mailbox-full")):
        raw = raw_message(engine, rows[email].id) or b""  # type: ignore[attr-defined]
        raw = re.sub(rb"bounces\+[0-9a-z-]+@" + BOUNCE_DOMAIN.encode(), b"{VERP}", raw)
        (SAMPLES / f"postfix-3.7-{name}.eml").write_bytes(raw)
