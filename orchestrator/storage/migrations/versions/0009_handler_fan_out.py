"""fan-out steps run by handlers: one row per member of an attempt

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fan_out_members",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("member", sa.Integer(), nullable=False),
        sa.Column("each", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["saga_id"], ["saga_runs.id"], name=op.f("fk_fan_out_members_saga_id_saga_runs")),
        sa.PrimaryKeyConstraint("saga_id", "step_index", "phase", "attempt", "member", name=op.f("pk_fan_out_members")),
    )


def downgrade() -> None:
    op.drop_table("fan_out_members")
