"""traceability: a tenant's goal registry, agents' actions on work items and their artifacts
(the work-items spec §13)

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "goals",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("code", sa.String(96), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "code", name=op.f("pk_goals")),
    )
    op.create_table(
        "agent_actions",
        sa.Column("id", sa.String(400), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("agent_id", sa.String(255), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_actions")),
        sa.UniqueConstraint("item_id", "agent_id", "sequence", name=op.f("uq_agent_actions_item_id_agent_id_sequence")),
    )
    op.create_index("ix_agent_actions_tenant_item", "agent_actions", ["tenant", "item_id"])
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(450), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("action_id", sa.String(400), nullable=False),
        sa.Column("artifact_type", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_index("ix_artifacts_action", "artifacts", ["action_id"])
    op.create_index("ix_artifacts_tenant_item", "artifacts", ["tenant", "item_id"])

    # When recording began: an agent's work audited before has no actions (validation skips it).
    # The database's clock, so a schema made by replaying these statements gets its own moment.
    op.create_table(
        "trace_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trace_epoch")),
    )
    op.execute("INSERT INTO trace_epoch (id, started_at) VALUES (1, CURRENT_TIMESTAMP)")


def downgrade() -> None:
    op.drop_table("trace_epoch")
    op.drop_table("artifacts")
    op.drop_table("agent_actions")
    op.drop_table("goals")
