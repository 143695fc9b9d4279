"""webhook deliveries being sent carry their lease, so every sender counts a tenant's in flight

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# As models.work_tables has it today; a migration keeps its own copy.
DELIVERY_LEASED_PREDICATE = "leased_until IS NOT NULL"


def upgrade() -> None:
    # Deliveries being sent while this runs have no lease recorded: for one lease's length
    # (the POST's timeout plus 55 s) they are not counted against their tenant's cap.
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["leased_until"],
        postgresql_where=sa.text(DELIVERY_LEASED_PREDICATE),
        sqlite_where=sa.text(DELIVERY_LEASED_PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_leased", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("leased_until")
