"""An index for paging through a run's outbox rows in id order.

Without it a large run re-sorted every row of the run for each batch (quadratic in subscribers).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_run_id_id", "delivery", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_run_id_id", table_name="delivery")
