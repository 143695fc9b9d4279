"""the generation id the orchestrator keeps in Redis, to tell a Redis that lost its data

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty: the first orchestrator to run writes the row and the marker, and re-dispatches
    # nothing (there is no loss to know of yet).
    op.create_table(
        "redis_generations",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_redis_generations")),
    )


def downgrade() -> None:
    op.drop_table("redis_generations")
