"""attempt deadlines on the attempt rows, not as watchdog timers

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As models.tables has it today; a migration keeps its own copy.
ATTEMPT_DEADLINE_PREDICATE = "outcome = 'running' AND deadline_at IS NOT NULL"

_timers = sa.table(
    "timers",
    sa.column("id", sa.BigInteger),
    sa.column("kind", sa.String),
    sa.column("saga_id", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("due_at", sa.DateTime(timezone=True)),
)
_attempts = sa.table(
    "step_attempts",
    sa.column("saga_id", sa.String),
    sa.column("step_index", sa.Integer),
    sa.column("phase", sa.String),
    sa.column("attempt", sa.Integer),
    sa.column("deadline_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_step_attempts_deadline",
        "step_attempts",
        ["deadline_at"],
        postgresql_where=sa.text(ATTEMPT_DEADLINE_PREDICATE),
        sqlite_where=sa.text(ATTEMPT_DEADLINE_PREDICATE),
    )
    # Pending watchdog timers become the deadlines of the attempts they watch.
    bind = op.get_bind()
    watchdogs = bind.execute(
        sa.select(_timers.c.id, _timers.c.saga_id, _timers.c.payload, _timers.c.due_at).where(
            _timers.c.kind == "watchdog"
        )
    ).all()
    for _, saga_id, payload, due_at in watchdogs:
        bind.execute(
            sa.update(_attempts)
            .where(
                _attempts.c.saga_id == saga_id,
                _attempts.c.step_index == payload["index"],
                _attempts.c.phase == payload["phase"],
                _attempts.c.attempt == payload["attempt"],
            )
            .values(deadline_at=due_at)
        )
    if watchdogs:
        bind.execute(sa.delete(_timers).where(_timers.c.id.in_([row[0] for row in watchdogs])))


def downgrade() -> None:
    bind = op.get_bind()
    running = bind.execute(
        sa.select(
            _attempts.c.saga_id,
            _attempts.c.step_index,
            _attempts.c.phase,
            _attempts.c.attempt,
            _attempts.c.deadline_at,
        ).where(sa.text(ATTEMPT_DEADLINE_PREDICATE))
    ).all()
    if running:
        op.bulk_insert(
            sa.table(
                "timers",
                sa.column("key", sa.String),
                sa.column("kind", sa.String),
                sa.column("saga_id", sa.String),
                sa.column("payload", sa.JSON),
                sa.column("due_at", sa.DateTime(timezone=True)),
                sa.column("created_at", sa.DateTime(timezone=True)),
            ),
            [
                {
                    "key": f"watchdog:{saga_id}:{index}:{phase}:{attempt}",
                    "kind": "watchdog",
                    "saga_id": saga_id,
                    "payload": {"index": index, "phase": phase, "attempt": attempt},
                    "due_at": deadline_at,
                    "created_at": deadline_at,
                }
                for saga_id, index, phase, attempt, deadline_at in running
            ],
        )
    op.drop_index("ix_step_attempts_deadline", table_name="step_attempts")
    with op.batch_alter_table("step_attempts", schema=None) as batch_op:
        batch_op.drop_column("deadline_at")
