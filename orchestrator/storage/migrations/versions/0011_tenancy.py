"""sagas and templates belong to a tenant; idempotence keys are per tenant

Existing templates become shared ("*": an operator's, runnable by every tenant); existing sagas
become an operator's ("*"), visible to all-tenant tokens only.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("saga_runs") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=64), nullable=False, server_default="*"))
        batch.drop_constraint("uq_saga_runs_idempotence_key", type_="unique")
        batch.create_unique_constraint("uq_saga_runs_tenant_idempotence_key", ["tenant", "idempotence_key"])
        batch.create_index("ix_saga_runs_tenant_created", ["tenant", "created_at"])
    with op.batch_alter_table("saga_runs") as batch:
        batch.alter_column("tenant", server_default=None)
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=64), nullable=False, server_default="*"))
        batch.drop_constraint("pk_templates", type_="primary")
        batch.create_primary_key("pk_templates", ["tenant", "name", "version"])
    with op.batch_alter_table("templates") as batch:
        batch.alter_column("tenant", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.drop_constraint("pk_templates", type_="primary")
        batch.create_primary_key("pk_templates", ["name", "version"])
        batch.drop_column("tenant")
    with op.batch_alter_table("saga_runs") as batch:
        batch.drop_index("ix_saga_runs_tenant_created")
        batch.drop_constraint("uq_saga_runs_tenant_idempotence_key", type_="unique")
        batch.create_unique_constraint("uq_saga_runs_idempotence_key", ["idempotence_key"])
        batch.drop_column("tenant")
