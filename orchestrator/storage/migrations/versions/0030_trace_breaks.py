"""trace_breaks: broken links of traceability chains, found by the real-time check or the nightly
validation, recorded once each (the work-items spec §13, "Broken Chain Resolution"); a partial
index of the audit rows the validation reads by tenant

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trace_breaks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("check_name", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(450), nullable=False),
        sa.Column("item_id", sa.String(96), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("found_by", sa.String(16), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remediation_id", sa.String(96), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trace_breaks")),
        sa.UniqueConstraint("tenant", "check_name", "subject", name=op.f("uq_trace_breaks_tenant_check_name_subject")),
    )
    op.create_index("ix_trace_breaks_item", "trace_breaks", ["item_id"])
    # A tenant's audit rows the traceability validation reads (agents' work, gate passages): a small
    # tenant's nightly run no longer reads every tenant's audit trail. Partial: other rows skip it.
    traced = sa.text("action IN ('claimed', 'completed', 'evidence', 'failed', 'gate_passed', 'started')")
    op.create_index(
        "ix_work_item_events_traced",
        "work_item_events",
        ["tenant", "action"],
        postgresql_where=traced,
        sqlite_where=traced,
    )


def downgrade() -> None:
    op.drop_index("ix_work_item_events_traced", table_name="work_item_events")
    op.drop_table("trace_breaks")
