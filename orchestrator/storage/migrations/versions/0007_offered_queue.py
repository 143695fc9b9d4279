"""claim-next: a partial index of the open queue, in queue order

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# As models.work_tables has it today; a migration keeps its own copy.
OFFERED_PREDICATE = "is_open = {true} AND deleted_at IS NULL AND claimed_by_id IS NULL AND assignee_id IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_work_items_offered",
        "work_items",
        ["tenant", "offer_type", sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=sa.text(OFFERED_PREDICATE.format(true="true")),
        sqlite_where=sa.text(OFFERED_PREDICATE.format(true="1")),
    )


def downgrade() -> None:
    op.drop_index("ix_work_items_offered", table_name="work_items")
