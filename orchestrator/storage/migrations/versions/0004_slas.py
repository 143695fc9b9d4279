"""SLAs on work items: the SLA, its reporting fields, and timers that belong to an item

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("sla_warned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breach_count", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("item_id", sa.String(length=96), nullable=True))
        batch_op.create_index(batch_op.f("ix_timers_item_id"), ["item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timers_item_id"))
        batch_op.drop_column("item_id")
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_column("sla_breach_count")
        batch_op.drop_column("sla_breached_at")
        batch_op.drop_column("sla_warned_at")
        batch_op.drop_column("sla")
