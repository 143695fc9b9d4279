"""work items remember their claim's lease TTL, and the progress an agent's heartbeats report

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        # A heartbeat without ttl_s keeps the claim's own TTL (null: the server default).
        batch.add_column(sa.Column("lease_ttl_s", sa.Float(), nullable=True))
        # What the holder last reported, and when it last changed: a holder that beats without
        # progress for too long is stalled, not dead.
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stalled_at", sa.DateTime(timezone=True), nullable=True))
        # The item's own stall ladder (null: the server default).
        batch.add_column(sa.Column("stall", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.drop_column("stall")
        batch.drop_column("stalled_at")
        batch.drop_column("progress_at")
        batch.drop_column("progress")
        batch.drop_column("lease_ttl_s")
