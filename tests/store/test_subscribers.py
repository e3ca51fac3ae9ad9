"""The subscriber repository on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from console_seed import subscriber_row

from digest.config import SubscriberEntry
from digest.errors import RuleError, SubscriberError
from digest.models import Cadence, SubscriberStatus
from digest.store import config_sync, signup, subscriber_rows
from digest.store import subscribers as repo
from digest.store.tables import delivered_paper, delivery, paper, run, subscriber

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _count(engine: sa.Engine, statement: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(statement).scalar_one())


class _CountingQueries:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.count = 0

    def __enter__(self) -> _CountingQueries:
        sa.event.listen(self.engine, "before_cursor_execute", self._hit)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._hit)

    def _hit(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):  # not SQLite's own BEGIN
            self.count += 1


def test_a_new_subscriber_is_stored_normalised_with_rules_in_order(engine: sa.Engine) -> None:
    sub = repo.add_subscriber(
        engine, "  Ann@Example.ORG ", ["diffusion", 'title:"flow matching"'], now=NOW, name=" Ann  B "
    )
    assert sub.email == "ann@example.org"
    assert [r.query for r in sub.rules] == ["diffusion", 'title:"flow matching"']
    assert sub.status is SubscriberStatus.PENDING and sub.name == "Ann B" and sub.token_version == 0
    assert repo.get_subscriber(engine, sub.id) == sub
    assert repo.find_subscriber(engine, "ANN@example.org") == sub


def test_adding_a_known_address_is_refused(engine: sa.Engine) -> None:
    repo.add_subscriber(engine, "ann@example.org", ["diffusion"], now=NOW)
    with pytest.raises(SubscriberError, match="already a subscriber"):
        repo.add_subscriber(engine, "ANN@example.org", ["agents"], now=NOW)


def test_bad_rules_and_bad_addresses_store_nothing(engine: sa.Engine) -> None:
    with pytest.raises(RuleError):
        repo.add_subscriber(engine, "ann@example.org", ["diffusion", "title:(agent"], now=NOW)
    with pytest.raises(SubscriberError, match="not a valid email address"):
        repo.add_subscriber(engine, "ann@example.org\r\nBcc: x@evil.org", ["diffusion"], now=NOW)
    with pytest.raises(SubscriberError, match="at least one rule"):
        repo.add_subscriber(engine, "ann@example.org", ["  ", ""], now=NOW)
    assert _count(engine, sa.select(sa.func.count()).select_from(subscriber)) == 0


def test_request_subscription_never_lets_a_stranger_change_an_active_subscription(engine: sa.Engine) -> None:
    consent = signup.Consent(
        at=NOW, source="web", ip="192.0.2.1", user_agent="UA", form={"rules": "diffusion"}
    )
    sub, outcome = signup.request_subscription(
        engine, "ann@example.org", ["diffusion"], now=NOW, consent=consent
    )
    assert outcome is signup.SubscribeOutcome.NEW and sub.status is SubscriberStatus.PENDING
    again, outcome = signup.request_subscription(
        engine, "ann@example.org", ["agents"], now=NOW, consent=consent
    )
    assert outcome is signup.SubscribeOutcome.PENDING and [r.query for r in again.rules] == ["agents"]
    assert signup.confirm_subscriber(engine, sub.id, now=NOW)
    assert not signup.confirm_subscriber(engine, sub.id, now=NOW)  # the second click activates nothing
    same, outcome = signup.request_subscription(
        engine, "ann@example.org", ["robots"], now=NOW, consent=consent
    )
    assert outcome is signup.SubscribeOutcome.ACTIVE and [r.query for r in same.rules] == ["agents"]
    repo.set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    back, outcome = signup.request_subscription(
        engine, "ann@example.org", ["robots"], now=NOW, consent=consent
    )
    assert outcome is signup.SubscribeOutcome.RESUBSCRIBED and back.status is SubscriberStatus.PENDING
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscriber)).one()
    assert (row.consent_source, row.consent_ip, row.consent_user_agent) == ("web", "192.0.2.1", "UA")
    assert row.consent_form == {"rules": "diffusion"}


def test_set_rules_status_and_cadence(engine: sa.Engine) -> None:
    sub = repo.add_subscriber(
        engine, "ann@example.org", ["diffusion"], now=NOW, status=SubscriberStatus.ACTIVE
    )
    later = NOW + timedelta(days=1)
    assert [r.query for r in repo.set_rules(engine, sub.id, ["agents", "robots"], now=later).rules] == [
        "agents",
        "robots",
    ]
    with pytest.raises(RuleError):
        repo.set_rules(engine, sub.id, ["agents AND"], now=later)
    assert [r.query for r in repo.get_subscriber(engine, sub.id).rules] == ["agents", "robots"]  # type: ignore[union-attr]
    weekly = repo.set_cadence(engine, sub.id, Cadence.WEEKLY, 4, later)
    assert (weekly.cadence, weekly.weekday) == (Cadence.WEEKLY, 4)
    with pytest.raises(SubscriberError, match="weekday"):
        repo.set_cadence(engine, sub.id, Cadence.WEEKLY, 7, later)
    assert (
        repo.set_status(engine, sub.id, SubscriberStatus.PAUSED, now=later).status is SubscriberStatus.PAUSED
    )
    first = repo.set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=later)
    repo.set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=later + timedelta(hours=5))
    assert first.status is SubscriberStatus.UNSUBSCRIBED
    with engine.connect() as conn:
        stamp = conn.execute(sa.select(subscriber.c.unsubscribed_at)).scalar_one()
    assert subscriber_rows.read_time(stamp) == later  # idempotent: the first time is kept


def test_config_managed_subscribers_refuse_changes_but_not_an_unsubscribe(engine: sa.Engine) -> None:
    sub = repo.add_subscriber(
        engine, "ops@example.org", ["agents"], now=NOW, status=SubscriberStatus.ACTIVE, managed_by_config=True
    )
    with pytest.raises(SubscriberError, match="configuration file"):
        repo.set_rules(engine, sub.id, ["robots"], now=NOW)
    with pytest.raises(SubscriberError, match="configuration file"):
        repo.set_cadence(engine, sub.id, Cadence.WEEKLY, 0, NOW)
    with pytest.raises(SubscriberError, match="configuration file"):
        repo.delete_subscriber_data(engine, sub.id, NOW)
    with pytest.raises(SubscriberError, match="configuration file"):
        repo.set_status(engine, sub.id, SubscriberStatus.PAUSED, now=NOW)
    gone = repo.set_status(engine, sub.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    assert gone.status is SubscriberStatus.UNSUBSCRIBED


def test_one_confirmation_mail_per_address_per_hour(engine: sa.Engine) -> None:
    sub = repo.add_subscriber(engine, "ann@example.org", ["diffusion"], now=NOW)
    assert signup.record_confirmation_sent(engine, sub.id, NOW)
    assert not signup.record_confirmation_sent(engine, sub.id, NOW + timedelta(minutes=59))
    assert signup.record_confirmation_sent(engine, sub.id, NOW + timedelta(minutes=60))
    assert not signup.record_confirmation_sent(engine, 999_999, NOW)


def test_delete_all_my_data_keeps_only_the_consent_record(engine: sa.Engine) -> None:
    sub = repo.add_subscriber(
        engine,
        "ann@example.org",
        ["diffusion"],
        now=NOW,
        name="Ann",
        status=SubscriberStatus.ACTIVE,
        consent=signup.Consent(
            at=NOW, source="web", ip="192.0.2.1", user_agent="UA", form={"email": "ann@example.org"}
        ),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.insert(paper).values(
                id="2601.00001",
                title="T",
                summary="S",
                authors=[],
                daily_date=date(2026, 3, 1),
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
        run_id = conn.execute(
            sa.insert(run).values(run_date=date(2026, 3, 1), started_at=NOW).returning(run.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(delivery).values(
                run_id=run_id,
                subscriber_id=sub.id,
                local_date=date(2026, 3, 1),
                state="sent",
                last_reply="250 ok <ann@example.org>",
                updated_at=NOW,
            )
        )
        conn.execute(
            sa.insert(delivered_paper).values(
                subscriber_id=sub.id, paper_id="2601.00001", run_id=run_id, delivered_at=NOW
            )
        )
    repo.delete_subscriber_data(engine, sub.id, NOW + timedelta(days=2))
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscriber)).one()
        text = repr(tuple(row))
    assert (
        "ann@example.org" not in text and "Ann" not in text and "192.0.2.1" not in text and "UA'" not in text
    )
    assert row.status == "unsubscribed" and row.token_version == 1
    assert subscriber_rows.read_time(row.consent_at) == NOW and row.consent_source == "web"
    assert subscriber_rows.read_time(row.unsubscribed_at) == NOW + timedelta(days=2)
    assert _count(engine, sa.select(sa.func.count()).select_from(delivered_paper)) == 0
    assert _count(engine, sa.select(sa.func.count()).select_from(delivery)) == 0
    assert repo.find_subscriber(engine, "ann@example.org") is None
    assert repo.list_subscribers(engine) == []
    with pytest.raises(SubscriberError, match="no subscriber"):
        repo.set_rules(engine, sub.id, ["x"], now=NOW)
    # The address is free again: the person may subscribe anew later.
    again, outcome = signup.request_subscription(engine, "ann@example.org", ["agents"], now=NOW)
    assert outcome is signup.SubscribeOutcome.NEW and again.id != sub.id


def test_list_and_active_subscribers_take_two_queries_whatever_the_count(engine: sa.Engine) -> None:
    for i in range(30):
        status = SubscriberStatus.ACTIVE if i % 3 else SubscriberStatus.PAUSED
        repo.add_subscriber(
            engine, f"user{i:02d}@example.org", [f"word{i}", "agents"], now=NOW, status=status
        )
    with _CountingQueries(engine) as counter:
        active = repo.active_subscribers(engine)
    assert counter.count <= 2
    assert len(active) == 20 and all(s.status is SubscriberStatus.ACTIVE for s in active)
    assert all([r.query for r in s.rules] == [f"word{int(s.email[4:6])}", "agents"] for s in active)
    with _CountingQueries(engine) as counter:
        listing = repo.list_subscribers(engine)
    assert counter.count <= 2
    assert [i.email for i in listing] == sorted(f"user{i:02d}@example.org" for i in range(30))
    assert listing[0].to_json() == {
        "email": "user00@example.org",
        "status": "paused",
        "rules": ["word0", "agents"],
        "cadence": "daily",
        "last_digest_at": None,
    }


def test_config_sync_creates_updates_adopts_and_retires(engine: sa.Engine) -> None:
    web = repo.add_subscriber(engine, "web@example.org", ["robots"], now=NOW, status=SubscriberStatus.ACTIVE)
    adopted_web = repo.add_subscriber(engine, "bob@example.org", ["robots"], now=NOW)
    first = config_sync.sync_config_subscribers(
        engine,
        [
            SubscriberEntry(email="Ops@Example.org", rules=["agents"], cadence="weekly", weekday="fri"),
            SubscriberEntry(email="bob@example.org", rules=["diffusion"]),
        ],
        NOW,
    )
    assert first.created == ["ops@example.org"] and first.adopted == ["bob@example.org"]
    ops = repo.find_subscriber(engine, "ops@example.org")
    assert ops is not None and ops.managed_by_config and ops.status is SubscriberStatus.ACTIVE
    assert (ops.cadence, ops.weekday) == (Cadence.WEEKLY, 4)
    bob = repo.get_subscriber(engine, adopted_web.id)
    assert bob is not None and bob.managed_by_config and bob.status is SubscriberStatus.ACTIVE
    assert [r.query for r in bob.rules] == ["diffusion"]

    again = config_sync.sync_config_subscribers(
        engine,
        [
            SubscriberEntry(email="ops@example.org", rules=["agents", "robots"]),
            SubscriberEntry(email="bob@example.org", rules=["diffusion"]),
        ],
        NOW,
    )
    assert again.updated == ["ops@example.org"] and again.unchanged == 1

    # Bob unsubscribes through his mailed link; the next sync keeps him unsubscribed.
    repo.set_status(engine, bob.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    last = config_sync.sync_config_subscribers(
        engine, [SubscriberEntry(email="bob@example.org", rules=["diffusion"])], NOW
    )
    assert last.kept_unsubscribed == ["bob@example.org"] and last.unsubscribed == ["ops@example.org"]
    retired = repo.find_subscriber(engine, "ops@example.org")
    assert (
        retired is not None
        and retired.status is SubscriberStatus.UNSUBSCRIBED
        and not retired.managed_by_config
    )
    assert repo.get_subscriber(engine, web.id) == web  # web subscribers untouched
    with pytest.raises(SubscriberError, match="listed twice"):
        config_sync.sync_config_subscribers(
            engine,
            [
                SubscriberEntry(email="a@example.org", rules=["x"]),
                SubscriberEntry(email="A@example.org", rules=["y"]),
            ],
            NOW,
        )


@pytest.mark.parametrize(
    "hostile",
    [
        "ann@example.org\nBcc: all@example.org",
        "ann@example.org\r",
        "ann\0@example.org",
        '"ann"@example.org',
        "Ann <ann@example.org>",
        "ann@example.org, bob@example.org",
        "a" * 300 + "@example.org",
        "ann@localhost",
        "ann@example.invalid",
        "ann@[127.0.0.1]",
        "josé@example.org",
        "",
    ],
)
def test_hostile_addresses_are_refused(hostile: str) -> None:
    from digest.addresses import normalize_email

    with pytest.raises(SubscriberError, match="is not a valid email address"):
        normalize_email(hostile)


def test_addresses_are_normalised_to_one_form() -> None:
    from digest.addresses import normalize_email

    assert normalize_email(" Ann.B+digest@Example.ORG ") == "ann.b+digest@example.org"
    assert normalize_email("ann@bücher.de") == "ann@xn--bcher-kva.de"


def test_config_sync_keeps_bounced_addresses_bounced(engine: sa.Engine) -> None:
    entries = [SubscriberEntry(email="dead@example.org", rules=["agents"])]
    config_sync.sync_config_subscribers(engine, entries, NOW)
    with engine.begin() as conn:  # what the outbox does after repeated hard bounces
        conn.execute(sa.update(subscriber).values(status="bounced", hard_bounces=3))
    for day in (1, 2):
        result = config_sync.sync_config_subscribers(engine, entries, NOW + timedelta(days=day))
        assert result.kept_bounced == ["dead@example.org"]
        assert result.updated == [] and result.unchanged == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscriber)).one()
    assert (row.status, row.hard_bounces, row.managed_by_config) == ("bounced", 3, True)
    assert repo.active_subscribers(engine) == []


def test_config_sync_honours_a_web_subscribers_unsubscribe(engine: sa.Engine) -> None:
    web = repo.add_subscriber(engine, "ann@example.org", ["robots"], now=NOW, status=SubscriberStatus.ACTIVE)
    repo.set_status(engine, web.id, SubscriberStatus.UNSUBSCRIBED, now=NOW)
    result = config_sync.sync_config_subscribers(
        engine, [SubscriberEntry(email="ann@example.org", rules=["agents"])], NOW + timedelta(days=1)
    )
    assert result.kept_unsubscribed == ["ann@example.org"] and result.adopted == []
    ann = repo.get_subscriber(engine, web.id)
    assert ann is not None and ann.status is SubscriberStatus.UNSUBSCRIBED
    assert not ann.managed_by_config and [r.query for r in ann.rules] == ["robots"]


@pytest.mark.postgres
def test_two_processes_syncing_the_same_new_address_at_once_both_succeed(postgres_url: str) -> None:
    """The other process has inserted the address but not committed when our sync inserts it too: ours
    waits on the unique index, gets an IntegrityError when the other commits, and syncs again."""
    import threading

    from digest.store import db

    engine = db.open_database(postgres_url)
    try:
        entries = [SubscriberEntry(email="ops@example.org", rules=["agents"])]
        outcome: list[object] = []
        with engine.connect() as other:
            other.begin()
            other.execute(
                sa.insert(subscriber).values(
                    **subscriber_row(
                        "ops@example.org",
                        NOW,
                        managed_by_config=True,
                        confirmed_at=NOW,
                        consent_at=NOW,
                        consent_source="config",
                    )
                )
            )

            def sync() -> None:
                try:
                    outcome.append(config_sync.sync_config_subscribers(engine, entries, NOW))
                except Exception as exc:  # reported to the test thread
                    outcome.append(exc)

            worker = threading.Thread(target=sync)
            worker.start()
            with engine.connect() as watch:  # wait until our insert waits on the other's row
                for _ in range(500):
                    waiting = watch.execute(
                        sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                    ).scalar()
                    if waiting:
                        break
                    threading.Event().wait(0.01)
                assert waiting, "the sync never waited on the other transaction"
            other.commit()
            worker.join(10)
        [result] = outcome
        assert isinstance(result, config_sync.SyncResult), result
        # The other process's row has no rules yet (it would add them in its own transaction): ours does.
        assert result.updated == ["ops@example.org"] and result.created == []
        ops = repo.find_subscriber(engine, "ops@example.org")
        assert ops is not None and ops.managed_by_config and [r.query for r in ops.rules] == ["agents"]
    finally:
        engine.dispose()


def test_new_rules_for_a_pending_address_revoke_the_earlier_confirmation_link(engine: sa.Engine) -> None:
    owner, _ = signup.request_subscription(engine, "ann@example.org", ["diffusion"], now=NOW)
    assert signup.record_confirmation_sent(engine, owner.id, NOW)
    # Within the hour of the owner's confirmation mail, a stranger's form changes nothing.
    early, outcome = signup.request_subscription(
        engine, "ann@example.org", ["crypto"], now=NOW + timedelta(minutes=30)
    )
    assert outcome is signup.SubscribeOutcome.TOO_SOON
    assert early.token_version == owner.token_version and [r.query for r in early.rules] == ["diffusion"]
    # Later the change goes through, but the owner's old link (version 0) no longer matches.
    later, outcome = signup.request_subscription(
        engine, "ann@example.org", ["crypto"], now=NOW + timedelta(hours=2)
    )
    assert outcome is signup.SubscribeOutcome.PENDING and [r.query for r in later.rules] == ["crypto"]
    assert later.token_version == owner.token_version + 1
    # The same form again changes nothing that a link confirms: no new version.
    same, outcome = signup.request_subscription(
        engine, "ann@example.org", ["crypto"], now=NOW + timedelta(hours=2)
    )
    assert outcome is signup.SubscribeOutcome.PENDING and same.token_version == later.token_version
