"""saga spine

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 04:24:37.418951
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_received_at"), ["received_at"], unique=False)

    op.create_table(
        "fencing_counters",
        sa.Column("scope", sa.String(length=400), nullable=False),
        sa.Column("last_token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_fencing_counters")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Fencing tokens on PostgreSQL: a sequence, so issuing one takes no row lock.
        op.execute(sa.schema.CreateSequence(sa.Sequence("fencing_tokens")))
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_created_at"), ["created_at"], unique=False)

    op.create_table(
        "saga_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("template_name", sa.String(length=200), nullable=False),
        sa.Column("template_version", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("idempotence_key", sa.String(length=255), nullable=True),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saga_runs")),
        sa.UniqueConstraint("idempotence_key", name=op.f("uq_saga_runs_idempotence_key")),
    )
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.create_index("ix_saga_runs_state_created", ["state", "created_at"], unique=False)
        batch_op.create_index("ix_saga_runs_template_created", ["template_name", "created_at"], unique=False)

    op.create_table(
        "templates",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_templates")),
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("saga_id", sa.String(length=36), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        sa.UniqueConstraint("key", name=op.f("uq_timers_key")),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_timers_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_timers_saga_id"), ["saga_id"], unique=False)

    op.create_table(
        "step_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_name", sa.String(length=200), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["saga_id"], ["saga_runs.id"], name=op.f("fk_step_attempts_saga_id_saga_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_attempts")),
        sa.UniqueConstraint(
            "saga_id", "step_index", "phase", "attempt", name=op.f("uq_step_attempts_saga_id_step_index_phase_attempt")
        ),
    )
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_step_attempts_saga_id"), ["saga_id"], unique=False)

    op.create_table(
        "step_runs",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("compensation_attempts", sa.Integer(), nullable=False),
        sa.Column("current_attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["saga_id"], ["saga_runs.id"], name=op.f("fk_step_runs_saga_id_saga_runs")),
        sa.PrimaryKeyConstraint("saga_id", "index", name=op.f("pk_step_runs")),
    )


def downgrade() -> None:
    op.drop_table("step_runs")
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_attempts_saga_id"))

    op.drop_table("step_attempts")
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timers_due_at"))
        batch_op.drop_index(batch_op.f("ix_timers_saga_id"))

    op.drop_table("timers")
    op.drop_table("templates")
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_saga_runs_template_created")
        batch_op.drop_index("ix_saga_runs_state_created")

    op.drop_table("saga_runs")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_created_at"))

    op.drop_table("outbox")
    op.drop_table("fencing_counters")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("fencing_tokens")))
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_received_at"))

    op.drop_table("dead_letters")
