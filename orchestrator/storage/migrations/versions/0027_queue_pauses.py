"""queue pauses: an operator's pauses of a template or a capability queue, their audit trail, and
on a saga run the pause that holds its next dispatch and since when its clocks stand still

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.add_column(sa.Column("held_by", sa.String(300), nullable=True))
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_saga_runs_held_by", ["held_by"])
    # A saga paused before this revision: its clocks stand still since its pause.
    op.execute("UPDATE saga_runs SET stopped_at = paused_at WHERE paused_at IS NOT NULL")
    op.create_table(
        "queue_pauses",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.UniqueConstraint("kind", "tenant", "name", name="uq_queue_pauses_kind_tenant_name"),
    )
    op.create_table(
        "pause_audit",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pause_audit")
    op.drop_table("queue_pauses")
    with op.batch_alter_table("saga_runs", schema=None) as batch:
        batch.drop_index("ix_saga_runs_held_by")
        batch.drop_column("stopped_at")
        batch.drop_column("held_at")
        batch.drop_column("held_by")
