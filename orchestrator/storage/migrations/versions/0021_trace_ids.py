"""trace ids: a saga run's trace (OpenTelemetry) and its submit span, the span of each step's last
forward attempt, and the trace of the saga that opened a work item

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.add_column(sa.Column("trace_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("trace_parent", sa.String(55), nullable=True))
    with op.batch_alter_table("step_runs", schema=None) as batch:
        batch.add_column(sa.Column("trace_parent", sa.String(55), nullable=True))
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.add_column(sa.Column("trace_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.drop_column("trace_id")
    with op.batch_alter_table("step_runs", schema=None) as batch:
        batch.drop_column("trace_parent")
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.drop_column("trace_id")
        batch.drop_column("trace_parent")
