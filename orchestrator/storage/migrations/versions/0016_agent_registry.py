"""the agent registry: agents and their capabilities; work-item types declare the capabilities and
risk level they need, and an item may raise its type's risk level

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("agent_type", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("registered_by", sa.String(length=300), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heartbeat_source", sa.String(length=16), nullable=True),
        sa.Column("deregistered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deregistered_by", sa.String(length=300), nullable=True),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name=op.f("pk_agents")),
    )
    with op.batch_alter_table("agents", schema=None) as batch:
        batch.create_index("ix_agents_tenant_type", ["tenant", "agent_type", "id"], unique=False)
        batch.create_index("ix_agents_id", ["id"], unique=False)

    op.create_table(
        "agent_capabilities",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "agent_id", "name", name=op.f("pk_agent_capabilities")),
    )
    with op.batch_alter_table("agent_capabilities", schema=None) as batch:
        batch.create_index("ix_agent_capabilities_name", ["name", "tenant", "agent_id"], unique=False)

    # Types registered before declare no capabilities and the lowest risk.
    with op.batch_alter_table("work_item_types", schema=None) as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("risk_level", sa.String(length=16), nullable=False, server_default="low"))
    with op.batch_alter_table("work_item_types", schema=None) as batch:
        batch.alter_column("capabilities", server_default=None)
        batch.alter_column("risk_level", server_default=None)

    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.add_column(sa.Column("risk_level", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.drop_column("risk_level")
    with op.batch_alter_table("work_item_types", schema=None) as batch:
        batch.drop_column("risk_level")
        batch.drop_column("capabilities")
    with op.batch_alter_table("agent_capabilities", schema=None) as batch:
        batch.drop_index("ix_agent_capabilities_name")
    op.drop_table("agent_capabilities")
    with op.batch_alter_table("agents", schema=None) as batch:
        batch.drop_index("ix_agents_id")
        batch.drop_index("ix_agents_tenant_type")
    op.drop_table("agents")
