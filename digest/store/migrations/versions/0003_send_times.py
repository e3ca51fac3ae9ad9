"""Per-subscriber send time and time zone; one digest per subscriber and local date.

``subscriber.send_time`` ("HH:MM") and ``subscriber.timezone`` (IANA) are NULL for a subscriber who follows
``[schedule]``. ``delivery.local_date`` is the subscriber's own date of the digest; existing rows take the
date of their run (until now every digest was dated by its run), and ``UNIQUE(subscriber_id, local_date)``
is what keeps repeated slots from sending a second digest on one local date.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_time", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local_date", sa.Date(), nullable=True))
    op.execute(
        "UPDATE delivery SET local_date = (SELECT run.run_date FROM run WHERE run.id = delivery.run_id)"
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.alter_column("local_date", existing_type=sa.Date(), nullable=False)
        batch_op.create_unique_constraint(
            "uq_delivery_subscriber_local_date", ["subscriber_id", "local_date"]
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_subscriber_local_date", type_="unique")
        batch_op.drop_column("local_date")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("timezone")
        batch_op.drop_column("send_time")
