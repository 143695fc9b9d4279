"""SLAs on sagas: the spec's reporting fields and what the SLA did, on the run

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_warned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breached_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_breach_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sla_events", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.drop_column("sla_events")
        batch_op.drop_column("sla_breach_count")
        batch_op.drop_column("sla_breached_at")
        batch_op.drop_column("sla_warned_at")
