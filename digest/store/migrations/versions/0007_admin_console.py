"""The operator console: the settings every process reads (the kill switch), the admin audit trail, and
failed console logins counted in the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "setting",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_setting")),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit")),
    )
    op.create_index(op.f("ix_admin_audit_at"), "admin_audit", ["at"], unique=False)
    op.create_table(
        "admin_login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_login_failure")),
    )
    op.create_index(op.f("ix_admin_login_failure_at"), "admin_login_failure", ["at"], unique=False)
    op.create_index(op.f("ix_admin_login_failure_ip"), "admin_login_failure", ["ip"], unique=False)
    op.create_index(
        op.f("ix_admin_login_failure_username"), "admin_login_failure", ["username"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_login_failure_username"), table_name="admin_login_failure")
    op.drop_index(op.f("ix_admin_login_failure_ip"), table_name="admin_login_failure")
    op.drop_index(op.f("ix_admin_login_failure_at"), table_name="admin_login_failure")
    op.drop_table("admin_login_failure")
    op.drop_index(op.f("ix_admin_audit_at"), table_name="admin_audit")
    op.drop_table("admin_audit")
    op.drop_table("setting")
