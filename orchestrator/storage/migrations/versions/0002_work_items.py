"""work items: items, dependencies, labels, audit trail, types registry, API tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:40:18.674911
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("principal_type", sa.String(length=16), nullable=False),
        sa.Column("principal_id", sa.String(length=255), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "work_item_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.String(length=96), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_item_events")),
    )
    with op.batch_alter_table("work_item_events", schema=None) as batch_op:
        batch_op.create_index("ix_work_item_events_item", ["item_id", "id"], unique=False)

    op.create_table(
        "work_item_types",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("json_schema", sa.JSON(), nullable=False),
        sa.Column("lifecycle", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_work_item_types")),
    )
    op.create_table(
        "work_items",
        sa.Column("id", sa.String(length=96), nullable=False),
        sa.Column("code", sa.String(length=96), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("lifecycle", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("reporter_type", sa.String(length=16), nullable=True),
        sa.Column("reporter_id", sa.String(length=255), nullable=True),
        sa.Column("assignee_type", sa.String(length=16), nullable=True),
        sa.Column("assignee_id", sa.String(length=255), nullable=True),
        sa.Column("parent_id", sa.String(length=96), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotence_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("offer_type", sa.String(length=16), nullable=True),
        sa.Column("offer_scope", sa.String(length=200), nullable=True),
        sa.Column("offer_group", sa.String(length=200), nullable=True),
        sa.Column("offer_capability", sa.String(length=200), nullable=True),
        sa.Column("claimed_by_type", sa.String(length=16), nullable=True),
        sa.Column("claimed_by_id", sa.String(length=255), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_items")),
        sa.UniqueConstraint("tenant", "idempotence_key", name=op.f("uq_work_items_tenant_idempotence_key")),
    )
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_work_items_assignee_next",
            ["assignee_type", "assignee_id", "status", "type", "deleted_at", "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_work_items_claimed", ["claimed_by_type", "claimed_by_id", "is_open"], unique=False)
        batch_op.create_index("ix_work_items_lease", ["lease_expires_at"], unique=False)
        batch_op.create_index("ix_work_items_parent", ["parent_id", "type", "deleted_at"], unique=False)
        batch_op.create_index(
            "ix_work_items_queue",
            ["tenant", "is_open", "claimed_by_id", "offer_type", "priority", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_work_items_reporter_next",
            ["reporter_type", "reporter_id", "status", "type", "deleted_at", "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_work_items_tenant_created", ["tenant", "created_at"], unique=False)

    op.create_table(
        "work_item_dependencies",
        sa.Column("item_id", sa.String(length=96), nullable=False),
        sa.Column("depends_on_id", sa.String(length=96), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["work_items.id"], name=op.f("fk_work_item_dependencies_item_id_work_items")
        ),
        sa.PrimaryKeyConstraint("item_id", "depends_on_id", name=op.f("pk_work_item_dependencies")),
    )
    with op.batch_alter_table("work_item_dependencies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_item_dependencies_depends_on_id"), ["depends_on_id"], unique=False)

    op.create_table(
        "work_item_labels",
        sa.Column("item_id", sa.String(length=96), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["work_items.id"], name=op.f("fk_work_item_labels_item_id_work_items")),
        sa.PrimaryKeyConstraint("item_id", "label", name=op.f("pk_work_item_labels")),
    )
    with op.batch_alter_table("work_item_labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_item_labels_label"), ["label"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("work_item_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_item_labels_label"))

    op.drop_table("work_item_labels")
    with op.batch_alter_table("work_item_dependencies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_item_dependencies_depends_on_id"))

    op.drop_table("work_item_dependencies")
    with op.batch_alter_table("work_items", schema=None) as batch_op:
        batch_op.drop_index("ix_work_items_tenant_created")
        batch_op.drop_index("ix_work_items_reporter_next")
        batch_op.drop_index("ix_work_items_queue")
        batch_op.drop_index("ix_work_items_parent")
        batch_op.drop_index("ix_work_items_lease")
        batch_op.drop_index("ix_work_items_claimed")
        batch_op.drop_index("ix_work_items_assignee_next")

    op.drop_table("work_items")
    op.drop_table("work_item_types")
    with op.batch_alter_table("work_item_events", schema=None) as batch_op:
        batch_op.drop_index("ix_work_item_events_item")

    op.drop_table("work_item_events")
    op.drop_table("api_tokens")
