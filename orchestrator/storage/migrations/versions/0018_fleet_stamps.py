"""agent_fleet_stamps: a stamp per tenant that changes with its registry, for the router's fleet in memory

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamps = op.create_table(
        "agent_fleet_stamps",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_agent_fleet_stamps")),
    )
    # Tenants that have agents already get a stamp: without one the router reads their fleet anew
    # for every decision (correct, only slower).
    tenants = [row[0] for row in op.get_bind().execute(sa.text("SELECT DISTINCT tenant FROM agents"))]
    if tenants:
        now = datetime.now(UTC)
        op.get_bind().execute(
            stamps.insert(),
            [{"tenant": t, "stamp": uuid.uuid4().hex, "changed_at": now} for t in tenants],
        )


def downgrade() -> None:
    op.drop_table("agent_fleet_stamps")
