"""The tables (DESIGN.md section 6) as SQLModel models. Migrations in ``migrations/`` create them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Naming convention so Alembic batch migrations on SQLite can find constraints by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TZ = sa.DateTime(timezone=True)


class PaperRow(SQLModel, table=True):
    __tablename__ = "paper"

    id: str = Field(primary_key=True, max_length=32)
    title: str
    summary: str = Field(sa_type=sa.Text)
    authors: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    upvotes: int = 0
    num_comments: int = 0
    published_at: datetime | None = Field(default=None, sa_type=TZ)
    daily_date: date = Field(index=True)
    ai_summary: str | None = Field(default=None, sa_type=sa.Text)
    ai_keywords: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    thumbnail_url: str | None = None
    organization: str | None = None
    organization_handle: str | None = None
    first_seen_at: datetime = Field(sa_type=TZ)
    last_seen_at: datetime = Field(sa_type=TZ)
    # float32 bytes of the title + abstract embedding (semantic extra); NULL until embedded.
    embedding: bytes | None = Field(default=None, sa_type=sa.LargeBinary)


class SubscriberRow(SQLModel, table=True):
    __tablename__ = "subscriber"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True})
    name: str | None = None
    status: str = Field(default="pending", max_length=16, index=True)
    cadence: str = Field(default="daily", max_length=8)
    weekday: int = 0
    managed_by_config: bool = False
    created_at: datetime = Field(sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ)
    confirmed_at: datetime | None = Field(default=None, sa_type=TZ)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=TZ)
    last_digest_at: datetime | None = Field(default=None, sa_type=TZ)
    last_confirmation_sent_at: datetime | None = Field(default=None, sa_type=TZ)
    hard_bounces: int = 0
    # Consent record: when, through what, from where (kept as the law needs, even after deletion).
    consent_at: datetime | None = Field(default=None, sa_type=TZ)
    consent_source: str | None = None
    consent_ip: str | None = None
    consent_user_agent: str | None = None
    consent_form: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # Bumped to invalidate every link already mailed (after "delete all my data").
    token_version: int = 0
    # Own send time ("HH:MM") and IANA zone; NULL = follows [schedule] (migration 0003).
    send_time: str | None = Field(default=None, max_length=5)
    timezone: str | None = Field(default=None, max_length=64)


class RuleRow(SQLModel, table=True):
    __tablename__ = "rule"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    position: int = 0
    name: str = ""
    query: str = Field(max_length=500)


class RunRow(SQLModel, table=True):
    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    run_date: date = Field(sa_column_kwargs={"unique": True})
    status: str = Field(default="running", max_length=16)  # running | done | failed
    owner: str | None = None
    started_at: datetime = Field(sa_type=TZ)
    heartbeat_at: datetime | None = Field(default=None, sa_type=TZ)
    # Set when the outbox rows of this run are written (planning happens once per date).
    planned_at: datetime | None = Field(default=None, sa_type=TZ)
    finished_at: datetime | None = Field(default=None, sa_type=TZ)
    papers_fetched: int = 0
    error: str | None = Field(default=None, sa_type=sa.Text)
    report: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "subscriber_id", name="uq_delivery_run_subscriber"),
        # The delivery loop pages through a run's rows in id order (migration 0002).
        sa.Index("ix_delivery_run_id_id", "run_id", "id"),
        # At most one digest per subscriber and local date, however many slots run (migration 0003).
        sa.UniqueConstraint("subscriber_id", "local_date", name="uq_delivery_subscriber_local_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False)
    )
    subscriber_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("subscriber.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    #: The subscriber's own date of this digest (the run date for those who follow [schedule]).
    local_date: date
    state: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    last_reply: str | None = Field(default=None, sa_type=sa.Text)
    paper_ids: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    message_id: str | None = None
    first_attempt_at: datetime | None = Field(default=None, sa_type=TZ)
    next_attempt_at: datetime | None = Field(default=None, sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ)


class DeliveredPaperRow(SQLModel, table=True):
    __tablename__ = "delivered_paper"

    subscriber_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True)
    )
    paper_id: str = Field(
        sa_column=sa.Column(sa.String(32), sa.ForeignKey("paper.id", ondelete="CASCADE"), primary_key=True)
    )
    run_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer, sa.ForeignKey("run.id", ondelete="SET NULL"))
    )
    delivered_at: datetime = Field(sa_type=TZ)


class AlertRow(SQLModel, table=True):
    """One admin alert per problem per day (the unique key is the deduplication)."""

    __tablename__ = "alert"
    __table_args__ = (sa.UniqueConstraint("day", "problem", name="uq_alert_day_problem"),)

    id: int | None = Field(default=None, primary_key=True)
    day: date
    problem: str = Field(max_length=64)
    detail: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(sa_type=TZ)
    sent_at: datetime | None = Field(default=None, sa_type=TZ)


class ChannelPostRow(SQLModel, table=True):
    """One day's post to one team-chat channel (the unique key is the once-per-day guarantee).

    The same discipline as ``delivery``: written before the post, claimed with a conditional update
    (``pending|retry -> sending``); ``parts_sent`` counts the messages of a split post already accepted,
    so a retry resumes after them instead of posting them twice.
    """

    __tablename__ = "channel_post"
    __table_args__ = (sa.UniqueConstraint("channel", "post_date", name="uq_channel_post_channel_date"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=64)
    post_date: date
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    parts_sent: int = 0
    paper_ids: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    last_reply: str | None = Field(default=None, sa_type=sa.Text)
    first_attempt_at: datetime | None = Field(default=None, sa_type=TZ)
    next_attempt_at: datetime | None = Field(default=None, sa_type=TZ)
    created_at: datetime = Field(sa_type=TZ)
    updated_at: datetime = Field(sa_type=TZ)


class SourceDayRow(SQLModel, table=True):
    """What the last fetch of each source day found: the refresh starts from the last good fetch, and a
    day whose emptiness looked wrong stays ``anomaly`` (asked again) instead of passing as "nothing new"."""

    __tablename__ = "source_day"

    day: date = Field(primary_key=True)
    status: str = Field(max_length=16)  # ok | anomaly
    papers: int = 0
    fetched_at: datetime = Field(sa_type=TZ, index=True)


class FeedbackRow(SQLModel, table=True):
    """One bounce, complaint or webhook event as received (migration 0004); kept even when unreadable."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(sa_type=TZ, index=True)
    source: str = Field(max_length=16)  # lmtp | imap | webhook | demo
    kind: str = Field(max_length=16)  # hard | soft | complaint | ignored | unreadable
    email: str | None = Field(default=None, max_length=320)
    subscriber_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("subscriber.id", ondelete="SET NULL"), nullable=True, index=True
        ),
    )
    delivery_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("delivery.id", ondelete="SET NULL"), nullable=True),
    )
    reason: str | None = Field(default=None, sa_type=sa.Text)
    action: str = Field(sa_type=sa.Text)
    raw_size: int = 0
    raw: bytes | None = Field(default=None, sa_type=sa.LargeBinary)


class BounceScoreRow(SQLModel, table=True):
    """Per-address bounce bookkeeping from feedback (a send accepted by the relay says nothing about it)."""

    __tablename__ = "bounce_score"

    subscriber_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("subscriber.id", ondelete="CASCADE"), primary_key=True)
    )
    hard_count: int = 0
    soft_score: float = 0.0
    last_bounce_at: datetime | None = Field(default=None, sa_type=TZ)
    last_reason: str | None = Field(default=None, sa_type=sa.Text)


class SettingRow(SQLModel, table=True):
    """Operator switches every process reads from the database (the kill switch: ``sending_paused``)."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_type=sa.Text)
    updated_at: datetime = Field(sa_type=TZ)
    updated_by: str | None = Field(default=None, max_length=64)


class AdminAuditRow(SQLModel, table=True):
    """Every action taken in the operator console: who, what, on what, when, from where."""

    __tablename__ = "admin_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=TZ, index=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=320)
    detail: str | None = Field(default=None, sa_type=sa.Text)
    ip: str | None = Field(default=None, max_length=64)


class AdminLoginFailureRow(SQLModel, table=True):
    """One failed console login; counted per address and per account over a window, in every process."""

    __tablename__ = "admin_login_failure"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=TZ, index=True)
    ip: str = Field(max_length=64, index=True)
    username: str = Field(max_length=64, index=True)


class RateLimitRow(SQLModel, table=True):
    """One counting window of a web limit (per IP, per address), shared by every process (migration 0009).

    ``key`` is a keyed hash of what is counted: no address or IP is stored in the clear.
    """

    __tablename__ = "rate_limit"

    key: str = Field(primary_key=True, max_length=64)
    window_start: datetime = Field(sa_type=TZ)
    hits: int = 0
    expires_at: datetime = Field(sa_type=TZ, index=True)


paper = PaperRow.__table__  # type: ignore[attr-defined]
subscriber = SubscriberRow.__table__  # type: ignore[attr-defined]
rule = RuleRow.__table__  # type: ignore[attr-defined]
run = RunRow.__table__  # type: ignore[attr-defined]
delivery = DeliveryRow.__table__  # type: ignore[attr-defined]
delivered_paper = DeliveredPaperRow.__table__  # type: ignore[attr-defined]
alert = AlertRow.__table__  # type: ignore[attr-defined]
channel_post = ChannelPostRow.__table__  # type: ignore[attr-defined]
source_day = SourceDayRow.__table__  # type: ignore[attr-defined]
feedback = FeedbackRow.__table__  # type: ignore[attr-defined]
bounce_score = BounceScoreRow.__table__  # type: ignore[attr-defined]
setting = SettingRow.__table__  # type: ignore[attr-defined]
admin_audit = AdminAuditRow.__table__  # type: ignore[attr-defined]
admin_login_failure = AdminLoginFailureRow.__table__  # type: ignore[attr-defined]
rate_limit = RateLimitRow.__table__  # type: ignore[attr-defined]
metadata = SQLModel.metadata
