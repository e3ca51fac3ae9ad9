"""What feedback does to subscribers: complaints unsubscribe at once, bounces past the thresholds mark the
address bounced, the soft score decays, and every message is recorded (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from feedback_helpers import NOW, add_active, add_delivery, sample, settings, status_of, verp

from digest.config_load import parse_config
from digest.feedback import Failure, decayed, process_event, process_message
from digest.outgoing import envelope_sender
from digest.store.feedback import bounce_summaries, count_by_kind, list_feedback, raw_message
from digest.store.tables import bounce_score


def soft_bounce(engine: sa.Engine, email: str, at: object, **kw: float) -> str:
    event = Failure(email, "soft", "452 4.2.2 Mailbox full")
    return process_event(engine, settings(**kw), event, b"{}", source="webhook", now=at).action  # type: ignore[arg-type]


def test_a_complaint_unsubscribes_at_once_and_is_recorded(engine: sa.Engine) -> None:
    sid = add_active(engine, "ada@users.example.net")
    delivery_id = add_delivery(engine, sid)

    result = process_message(
        engine, settings(), sample("arf-abuse-complaint.eml", delivery_id), source="lmtp", now=NOW
    )

    assert status_of(engine, "ada@users.example.net") == "unsubscribed"
    assert result.kind == "complaint" and "unsubscribed (complaint)" in result.action
    [row] = list_feedback(engine)
    assert (row.kind, row.email, row.source) == ("complaint", "ada@users.example.net", "lmtp")


def test_verp_finds_the_person_even_when_the_dsn_names_another_address(engine: sa.Engine) -> None:
    sid = add_active(engine, "ada@users.example.net")  # forwarded on to ghost@contoso.com, which bounced
    delivery_id = add_delivery(engine, sid)

    process_message(
        engine,
        settings(),
        sample("exchange-online-recipient-not-found.eml", delivery_id),
        source="imap",
        now=NOW,
    )

    assert status_of(engine, "ada@users.example.net") == "bounced"


def test_one_hard_bounce_marks_the_address_bounced_by_default(engine: sa.Engine) -> None:
    delivery_id = add_delivery(engine, add_active(engine, "ghost@users.example.net"))

    result = process_message(
        engine, settings(), sample("postfix-3.7-user-unknown.eml", delivery_id), source="lmtp", now=NOW
    )

    assert status_of(engine, "ghost@users.example.net") == "bounced"
    assert "hard bounce 1/1: marked bounced" in result.action


def test_hard_bounces_below_the_threshold_only_count(engine: sa.Engine) -> None:
    raw = sample(
        "postfix-3.7-user-unknown.eml", add_delivery(engine, add_active(engine, "ghost@users.example.net"))
    )

    process_message(engine, settings(hard=2), raw, source="lmtp", now=NOW)
    assert status_of(engine, "ghost@users.example.net") == "active"
    process_message(engine, settings(hard=2), raw, source="lmtp", now=NOW + timedelta(days=1))
    assert status_of(engine, "ghost@users.example.net") == "bounced"


def test_soft_bounces_mark_the_address_bounced_at_the_threshold(engine: sa.Engine) -> None:
    add_active(engine, "full@users.example.net")
    for day in range(4):
        soft_bounce(engine, "full@users.example.net", NOW + timedelta(days=day))
    assert status_of(engine, "full@users.example.net") == "active"

    action = soft_bounce(engine, "full@users.example.net", NOW + timedelta(days=4))

    assert status_of(engine, "full@users.example.net") == "bounced"
    assert "soft score 5/5: marked bounced" in action


def test_the_soft_score_halves_after_each_quiet_week(engine: sa.Engine) -> None:
    add_active(engine, "full@users.example.net")
    for day in range(4):
        soft_bounce(engine, "full@users.example.net", NOW + timedelta(days=day))

    # 4 points, then two quiet weeks: 1 point left, and the next bounce makes 2, far from 5.
    action = soft_bounce(engine, "full@users.example.net", NOW + timedelta(days=3 + 14))

    assert "soft score 2/5" in action
    assert status_of(engine, "full@users.example.net") == "active"
    with engine.connect() as conn:
        assert conn.execute(sa.select(bounce_score.c.soft_score)).scalar() == 2.0


def test_decay_is_a_function_of_the_clock_passed_in() -> None:
    assert decayed(4.0, NOW, NOW + timedelta(days=6, hours=23)) == 4.0
    assert decayed(4.0, NOW, NOW + timedelta(days=7)) == 2.0
    assert decayed(4.0, NOW, NOW + timedelta(days=21)) == 0.5
    assert decayed(4.0, None, NOW) == 4.0


def test_an_unreadable_message_is_kept_whole_and_counted(engine: sa.Engine) -> None:
    raw = b"\x00\xffthis is not mail\r\n" * 3

    result = process_message(engine, settings(), raw, source="lmtp", now=NOW)

    assert result.kind == "unreadable"
    assert raw_message(engine, result.feedback_id) == raw
    assert count_by_kind(engine) == {"unreadable": 1}


def test_without_verp_a_bounce_is_matched_by_its_address(engine: sa.Engine) -> None:
    add_active(engine, "ghost@users.example.net")
    no_verp = replace(settings(), bounce_address=None)

    process_message(engine, no_verp, sample("postfix-3.7-user-unknown.eml"), source="imap", now=NOW)

    assert status_of(engine, "ghost@users.example.net") == "bounced"


def test_with_verp_a_bounce_without_a_valid_token_is_recorded_but_applied_to_nobody(
    engine: sa.Engine,
) -> None:
    add_active(engine, "ghost@users.example.net")  # someone mails us a made-up DSN naming ghost

    result = process_message(
        engine, settings(), sample("postfix-3.7-user-unknown.eml"), source="lmtp", now=NOW
    )

    assert status_of(engine, "ghost@users.example.net") == "active"
    assert "not applied: no valid VERP token" in result.action
    assert count_by_kind(engine) == {"hard": 1}


def test_a_bounce_for_an_unknown_address_is_recorded_and_changes_nothing(engine: sa.Engine) -> None:
    add_active(engine, "alice@users.example.net")
    no_verp = replace(settings(), bounce_address=None)

    result = process_message(engine, no_verp, sample("gmail-address-not-found.eml"), source="imap", now=NOW)

    assert "no such subscriber" in result.action
    assert status_of(engine, "alice@users.example.net") == "active"
    assert count_by_kind(engine) == {"hard": 1}


def test_an_unsubscribed_address_is_not_moved_to_bounced(engine: sa.Engine) -> None:
    sid = add_active(engine, "ada@users.example.net")
    delivery_id = add_delivery(engine, sid)
    process_message(
        engine, settings(), sample("arf-abuse-complaint.eml", delivery_id), source="lmtp", now=NOW
    )

    process_message(
        engine, settings(), sample("gmail-address-not-found.eml", delivery_id), source="lmtp", now=NOW
    )

    assert status_of(engine, "ada@users.example.net") == "unsubscribed"


def test_the_bounce_summary_shows_the_count_and_the_last_reply(engine: sa.Engine) -> None:
    delivery_id = add_delivery(engine, add_active(engine, "ghost@users.example.net"))
    add_active(engine, "alice@users.example.net")
    raw = sample("postfix-3.7-user-unknown.eml", delivery_id)
    process_message(engine, settings(hard=3), raw, source="lmtp", now=NOW)

    summary = bounce_summaries(engine)

    assert summary["ghost@users.example.net"].hard_bounces == 1
    assert "550 5.1.1" in (summary["ghost@users.example.net"].last_failure or "")
    assert (
        summary["alice@users.example.net"].hard_bounces == 0
        and summary["alice@users.example.net"].last_failure is None
    )


def test_a_digest_is_sent_from_the_verp_address_only_when_one_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", settings().secret)
    config = parse_config({"bounces": {"address": "bounces@Lists.Example.org"}}, tmp_path / "config.toml")
    plain = parse_config({}, tmp_path / "config.toml")

    assert envelope_sender(config, 12) == verp(12)
    assert len(verp(10**12).partition("@")[0]) <= 64, "a local part has at most 64 characters"
    assert envelope_sender(plain, 12) == "digest@example.org"
