"""items that can be undone: a work item's RACI, related goals, risk assessment, templates applied,
item-level timeouts and compensation plan; the runs of its compensation plan

Revision ID: 0024
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("work_items", schema=None) as batch:
        batch.add_column(sa.Column("raci", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("related_goals", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("risk_assessment", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("templates_applied", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("timeout_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("overall_timeout_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("compensation", sa.JSON(), nullable=True))
    op.create_table(
        "work_item_compensations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("saga_id", sa.String(36), nullable=False),
        sa.Column("idempotence_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("from_status", sa.String(32), nullable=False),
        sa.Column("remediation_id", sa.String(96), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_item_compensations")),
        sa.UniqueConstraint(
            "item_id", "idempotence_key", name=op.f("uq_work_item_compensations_item_id_idempotence_key")
        ),
        sa.UniqueConstraint("saga_id", name=op.f("uq_work_item_compensations_saga_id")),
    )
    op.create_index("ix_work_item_compensations_item", "work_item_compensations", ["item_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_work_item_compensations_item", table_name="work_item_compensations")
    op.drop_table("work_item_compensations")
    with op.batch_alter_table("work_items", schema=None) as batch:
        for column in (
            "compensation",
            "overall_timeout_ms",
            "timeout_ms",
            "templates_applied",
            "risk_assessment",
            "related_goals",
            "raci",
        ):
            batch.drop_column(column)
