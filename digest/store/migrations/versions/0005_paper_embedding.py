"""paper.embedding: the paper's sentence embedding (float32 bytes) for like: rules (semantic extra).

Written once when the paper is stored and never recomputed; NULL when the extra is off.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("paper") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("paper") as batch:
        batch.drop_column("embedding")
