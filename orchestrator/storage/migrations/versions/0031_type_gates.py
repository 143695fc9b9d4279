"""a work-item type's gates: the policy that gates every item of the type, and its human in the loop

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_item_types") as batch:
        batch.add_column(sa.Column("approval_policy_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("hitl", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_item_types") as batch:
        batch.drop_column("hitl")
        batch.drop_column("approval_policy_id")
