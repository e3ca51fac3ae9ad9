"""The tokens of the read-only links (one salt per purpose) and the channel_post key, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from digest.errors import TokenError
from digest.store import channels as store
from digest.store.tables import channel_post
from digest.tokens import make_digest_token, make_token, read_digest_token, read_token

KEY = "k" * 48
NOW = datetime(2026, 8, 21, 7, tzinfo=UTC)


def test_a_digest_token_names_the_subscriber_the_version_and_the_day() -> None:
    token = make_digest_token(KEY, 42, 3, date(2026, 8, 21))
    assert read_digest_token(KEY, token) == (42, 3, date(2026, 8, 21))


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe", "archive", "feed"])
def test_a_token_of_another_purpose_or_key_is_refused(purpose: str) -> None:
    other = make_token(KEY, purpose, 42, 0)  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        read_digest_token(KEY, other)
    digest = make_digest_token(KEY, 42, 0, date(2026, 8, 21))
    with pytest.raises(TokenError):
        read_token(KEY, purpose, digest)  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        read_digest_token("x" * 48, digest)


def test_archive_and_feed_tokens_do_not_expire_but_do_not_open_each_other() -> None:
    archive = make_token(KEY, "archive", 7, 1)
    assert read_token(KEY, "archive", archive) == (7, 1)
    with pytest.raises(TokenError):
        read_token(KEY, "feed", archive)


def test_a_tampered_digest_token_is_refused() -> None:
    token = make_digest_token(KEY, 42, 0, date(2026, 8, 21))
    forged = token.replace("42.0.20260821", "43.0.20260821", 1)
    with pytest.raises(TokenError):
        read_digest_token(KEY, forged)


def test_one_post_per_channel_and_day_whoever_plans_it(engine: sa.Engine) -> None:
    first = store.plan_post(engine, "lab", date(2026, 8, 21), ["2608.1"], NOW)
    second = store.plan_post(engine, "lab", date(2026, 8, 21), ["2608.2"], NOW)
    assert second.id == first.id and second.paper_ids == ["2608.1"]
    other = store.plan_post(engine, "team", date(2026, 8, 21), [], NOW)
    assert other.state == "skipped"
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            channel_post.insert().values(
                channel="lab",
                post_date=date(2026, 8, 21),
                state="pending",
                attempts=0,
                parts_sent=0,
                paper_ids=[],
                created_at=NOW,
                updated_at=NOW,
            )
        )


def test_a_claimed_post_is_claimed_once(engine: sa.Engine) -> None:
    post = store.plan_post(engine, "lab", date(2026, 8, 21), ["2608.1"], NOW)
    assert store.claim_post(engine, post, NOW) is not None
    assert store.claim_post(engine, post, NOW) is None, "the row changed since it was read"
    assert store.recover_stale_posts(engine, NOW.replace(hour=9), timedelta(minutes=10)) == 1
    fresh = store.get_post(engine, "lab", date(2026, 8, 21))
    assert fresh is not None and fresh.state == "uncertain"
