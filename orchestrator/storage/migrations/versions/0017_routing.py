"""routing rules (every version), routing decisions, round-robin cursors; a work item's hitl requirement

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# As models.tables has it today: BIGINT on PostgreSQL, INTEGER (rowid) on SQLite.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "routing_rules",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", "version", name=op.f("pk_routing_rules")),
    )
    op.create_index("ix_routing_rules_live", "routing_rules", ["tenant", "is_latest", "enabled"])
    op.create_table(
        "routing_decisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("rule_tenant", sa.String(64), nullable=True),
        sa.Column("rule_id", sa.String(100), nullable=True),
        sa.Column("rule_version", sa.Integer(), nullable=True),
        sa.Column("strategy", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("omitted", sa.JSON(), nullable=False),
        sa.Column("chosen_assignee", sa.String(300), nullable=True),
        sa.Column("previous_assignee", sa.String(300), nullable=True),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_decisions")),
    )
    op.create_index("ix_routing_decisions_item", "routing_decisions", ["item_id", "id"])
    op.create_table(
        "routing_cursors",
        sa.Column("rule_tenant", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(100), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("last_ref", sa.String(300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rule_tenant", "rule_id", "tenant", name=op.f("pk_routing_cursors")),
    )
    with op.batch_alter_table("work_items", schema=None) as batch:
        # The human-in-the-loop requirement a routing rule put on the item (null: none).
        batch.add_column(sa.Column("hitl", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.drop_column("hitl")
    op.drop_table("routing_cursors")
    op.drop_index("ix_routing_decisions_item", table_name="routing_decisions")
    op.drop_table("routing_decisions")
    op.drop_index("ix_routing_rules_live", table_name="routing_rules")
    op.drop_table("routing_rules")
