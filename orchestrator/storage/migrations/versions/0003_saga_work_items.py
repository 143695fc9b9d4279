"""saga steps that wait on work items: the link from an item to its saga step

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("saga_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("saga_step", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("saga_step_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("saga_phase", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("saga_attempt", sa.Integer(), nullable=True))
        batch_op.create_index("ix_work_items_saga", ["saga_id", "saga_step_index"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_index("ix_work_items_saga")
        batch_op.drop_column("saga_attempt")
        batch_op.drop_column("saga_phase")
        batch_op.drop_column("saga_step_index")
        batch_op.drop_column("saga_step")
        batch_op.drop_column("saga_id")
