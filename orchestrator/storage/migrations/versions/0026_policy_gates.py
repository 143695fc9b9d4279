"""policy gates: policies (every version), approvals, evidence, validator runs

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", "version", name=op.f("pk_policies")),
    )
    op.create_index("ix_policies_live", "policies", ["tenant", "is_latest"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("policy_id", sa.String(100), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(200), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("approver", sa.String(300), nullable=False),
        sa.Column("approver_type", sa.String(16), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index("ix_approvals_item", "approvals", ["item_id", "created_at"])
    op.create_table(
        "evidence",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("policy_id", sa.String(100), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("evidence_type", sa.String(64), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name=op.f("pk_evidence")),
    )
    op.create_index("ix_evidence_item", "evidence", ["item_id", "created_at"])
    op.create_table(
        "validations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=False),
        sa.Column("policy_id", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("check_name", sa.String(100), nullable=False),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("capability", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("evidence_id", sa.String(120), nullable=True),
        sa.Column("remediation_item_id", sa.String(96), nullable=True),
        sa.Column("requested_by", sa.String(300), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validations")),
    )
    op.create_index("ix_validations_item", "validations", ["item_id", "check_name", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_validations_item", table_name="validations")
    op.drop_table("validations")
    op.drop_index("ix_evidence_item", table_name="evidence")
    op.drop_table("evidence")
    op.drop_index("ix_approvals_item", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_policies_live", table_name="policies")
    op.drop_table("policies")
