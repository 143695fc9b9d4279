"""partial indexes for an agent's load: its open claims, and the open items routed to it not taken up

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# As models.work_tables has them today; a migration keeps its own copy.
AGENT_CLAIMS_PREDICATE = "claimed_by_type = 'agent' AND is_open = {true} AND deleted_at IS NULL"
AGENT_WAITING_PREDICATE = (
    "assignee_type = 'agent' AND is_open = {true} AND deleted_at IS NULL "
    "AND claimed_by_id IS NULL AND started_at IS NULL"
)


def upgrade() -> None:
    op.create_index(
        "ix_work_items_agent_claims",
        "work_items",
        ["claimed_by_id", "tenant", "lease_expires_at"],
        postgresql_where=sa.text(AGENT_CLAIMS_PREDICATE.format(true="true")),
        sqlite_where=sa.text(AGENT_CLAIMS_PREDICATE.format(true="1")),
    )
    op.create_index(
        "ix_work_items_agent_waiting",
        "work_items",
        ["assignee_id", "tenant", "id"],
        postgresql_where=sa.text(AGENT_WAITING_PREDICATE.format(true="true")),
        sqlite_where=sa.text(AGENT_WAITING_PREDICATE.format(true="1")),
    )


def downgrade() -> None:
    op.drop_index("ix_work_items_agent_waiting", table_name="work_items")
    op.drop_index("ix_work_items_agent_claims", table_name="work_items")
