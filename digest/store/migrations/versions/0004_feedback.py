"""Delivery feedback: every bounce, complaint and webhook event as received, and per-address bounce scores.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_feedback_subscriber_id_subscriber"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_feedback_delivery_id_delivery"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_received_at"), "feedback", ["received_at"])
    op.create_index(op.f("ix_feedback_subscriber_id"), "feedback", ["subscriber_id"])
    op.create_table(
        "bounce_score",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("hard_count", sa.Integer(), nullable=False),
        sa.Column("soft_score", sa.Float(), nullable=False),
        sa.Column("last_bounce_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            name=op.f("fk_bounce_score_subscriber_id_subscriber"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_bounce_score")),
    )


def downgrade() -> None:
    op.drop_table("bounce_score")
    op.drop_index(op.f("ix_feedback_subscriber_id"), table_name="feedback")
    op.drop_index(op.f("ix_feedback_received_at"), table_name="feedback")
    op.drop_table("feedback")
