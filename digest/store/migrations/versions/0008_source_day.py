"""The source days: what the last fetch of each day found (catch-up after downtime, empty-day anomalies).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("papers", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_source_day")),
    )
    op.create_index(op.f("ix_source_day_fetched_at"), "source_day", ["fetched_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_source_day_fetched_at"), table_name="source_day")
    op.drop_table("source_day")
