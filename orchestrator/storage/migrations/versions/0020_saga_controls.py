"""saga controls: when an operator cancelled or paused a saga run, what a pause held back, how
many times it was rerun, and the audit trail of its controls

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("paused_ms", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("held", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reruns", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("step_runs", schema=None) as batch:
        batch.add_column(sa.Column("key_rerun", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "saga_audit",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("saga_id", sa.String(36), sa.ForeignKey("saga_runs.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_saga_audit_saga_id", "saga_audit", ["saga_id"])


def downgrade() -> None:
    op.drop_index("ix_saga_audit_saga_id", table_name="saga_audit")
    op.drop_table("saga_audit")
    with op.batch_alter_table("step_runs", schema=None) as batch:
        batch.drop_column("key_rerun")
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.drop_column("reruns")
        batch.drop_column("held")
        batch.drop_column("paused_ms")
        batch.drop_column("paused_at")
        batch.drop_column("cancelled_at")
