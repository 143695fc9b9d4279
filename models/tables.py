"""SQLAlchemy tables for templates, saga runs, step runs, attempts, outbox, timers, dead letters."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow
from models.enums import Outcome, Phase, SagaState, StepState


def _status(enum: type[StrEnum]) -> SAEnum:
    """A status stored as VARCHAR (no native enum to migrate) that loads as the enum member."""
    return SAEnum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


# Portable auto-increment primary key: BIGINT on PostgreSQL, INTEGER (rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class TemplateRow(Base):
    """A registered saga template version; immutable once written."""

    __tablename__ = "templates"

    # The tenant that owns it; "*": a shared template, published by an operator, that every
    # tenant may run but no tenant may add versions to.
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]]
    spec_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SagaRun(Base):
    """One saga run: the template version it follows, its input, state, step results and SLA standing."""

    __tablename__ = "saga_runs"
    __table_args__ = (
        Index("ix_saga_runs_state_created", "state", "created_at"),
        Index("ix_saga_runs_template_created", "template_name", "created_at"),
        Index("ix_saga_runs_tenant_created", "tenant", "created_at"),
        # Idempotence keys are a tenant's own: another tenant's key neither collides nor leaks.
        UniqueConstraint("tenant", "idempotence_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The tenant the saga runs for; "*": an operator's saga of no tenant (it opens no work items).
    tenant: Mapped[str] = mapped_column(String(64))
    template_name: Mapped[str] = mapped_column(String(200))
    template_version: Mapped[str] = mapped_column(String(64))
    state: Mapped[SagaState] = mapped_column(_status(SagaState))
    input: Mapped[dict[str, Any]]
    input_hash: Mapped[str] = mapped_column(String(64))
    idempotence_key: Mapped[str | None] = mapped_column(String(255))
    # Outputs of the steps that succeeded, by step name; handlers of later steps read them.
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The saga's SLA (the template's), what it has done so far: the spec's reporting fields,
    # and each warning, breach and escalation step with what it did.
    sla_warned_at: Mapped[datetime | None]
    sla_breached_at: Mapped[datetime | None]
    sla_breach_count: Mapped[int] = mapped_column(default=0)
    sla_events: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # When an operator cancelled it: the compensation that follows ends it cancelled.
    cancelled_at: Mapped[datetime | None]
    # Since when an operator has paused it (null: not paused), and how long its earlier pauses
    # lasted: its deadline and SLA clocks stood still meanwhile.
    paused_at: Mapped[datetime | None]
    paused_ms: Mapped[int] = mapped_column(default=0)
    # The dispatch a pause held back ({"index": i, "phase": "forward"}), sent on resume.
    held: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The pause of a template or a capability (its key, ``orchestrator.sagas.pause_book``) that
    # holds that dispatch back, and since when (null: none holds it); resuming that pause sends
    # what it held, oldest first.
    held_by: Mapped[str | None] = mapped_column(String(300), index=True)
    held_at: Mapped[datetime | None]
    # Since when its deadline and SLA clocks stand still, for whichever pause (its own, or the
    # pause of its template or of a step's capability); null: they run.
    stopped_at: Mapped[datetime | None]
    # How many times an operator has rerun it: the steps run again get idempotence keys of the
    # rerun's own (a worker's stored result of an earlier run is not replayed for them).
    reruns: Mapped[int] = mapped_column(default=0)
    # Its trace (OpenTelemetry), when the orchestrator traced its submit: the trace id, and the W3C
    # traceparent of its submit span, which what happens to it without a message to carry the
    # trace (a timer, an operator's control) continues.
    trace_id: Mapped[str | None] = mapped_column(String(32))
    trace_parent: Mapped[str | None] = mapped_column(String(55))

    steps: Mapped[list[StepRun]] = relationship(order_by="StepRun.index", back_populates="saga", lazy="selectin")


class SagaAuditEntry(Base):
    """One operator's control of a saga run (cancel, terminate, ...): who, when, why, and what it did."""

    __tablename__ = "saga_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("saga_runs.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The principal that acted, as ``user:<id>`` or ``agent:<id>``.
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    # The saga's state before and after, and what the control did (steps stopped, items cancelled).
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class QueuePause(Base):
    """An operator's pause of a template or of a capability queue: nothing new is dispatched for
    the steps of that template, or on that capability, for the sagas of its tenant ("*": of every
    tenant), until it is resumed (the row is deleted)."""

    __tablename__ = "queue_pauses"
    __table_args__ = (UniqueConstraint("kind", "tenant", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "template" or "capability" (models.enums.PauseKind).
    kind: Mapped[str] = mapped_column(String(16))
    # Whose sagas it holds; "*": everybody's (only an all-tenants principal pauses so).
    tenant: Mapped[str] = mapped_column(String(64))
    # The template's name or the capability.
    name: Mapped[str] = mapped_column(String(200))
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text)


class PauseAuditEntry(Base):
    """One pause or resume of a template or capability: who, when, why, and what it did."""

    __tablename__ = "pause_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(300))
    # "pause" or "resume".
    action: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    # A resume: how many held dispatches it sent.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class StepRun(Base):
    """One step of one saga run: its state and the attempts counted in its forward and compensation phases."""

    __tablename__ = "step_runs"

    saga_id: Mapped[str] = mapped_column(ForeignKey("saga_runs.id"), primary_key=True)
    index: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[StepState] = mapped_column(_status(StepState), default=StepState.pending)
    # Counted attempts (deferrals excluded) of the forward and the compensating phase.
    attempts: Mapped[int] = mapped_column(default=0)
    compensation_attempts: Mapped[int] = mapped_column(default=0)
    # Highest attempt number dispatched in the step's current phase (deferrals included).
    current_attempt: Mapped[int] = mapped_column(default=0)
    # The rerun of the saga whose idempotence keys the step's attempts use (0: the first run's):
    # a rerun gives a step keys of its own only where its earlier effect is known not to stand.
    key_rerun: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The traceparent of the span that ran its last forward attempt (the worker's): a compensation
    # links to it, the span it undoes.
    trace_parent: Mapped[str | None] = mapped_column(String(55))

    saga: Mapped[SagaRun] = relationship(back_populates="steps")


class StepAttempt(Base):
    """One dispatch of one step: the rows of a saga's timeline."""

    __tablename__ = "step_attempts"
    __table_args__ = (UniqueConstraint("saga_id", "step_index", "phase", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    saga_id: Mapped[str] = mapped_column(ForeignKey("saga_runs.id"), index=True)
    step_index: Mapped[int]
    step_name: Mapped[str] = mapped_column(String(200))
    phase: Mapped[Phase] = mapped_column(_status(Phase))
    attempt: Mapped[int]
    outcome: Mapped[Outcome] = mapped_column(_status(Outcome), default=Outcome.running)
    worker: Mapped[str | None] = mapped_column(String(255))
    fencing_token: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    dispatched_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # While running: when the attempt times out if no worker has reported (or, for a work-item
    # step with a timeout, the item is not finished). The timer loop watches these through the
    # partial index below; a settled attempt leaves it, so a report needs no timer to cancel.
    deadline_at: Mapped[datetime | None]


# Running attempts with a deadline, soonest first (the timer loop's second source).
ATTEMPT_DEADLINE_PREDICATE = "outcome = 'running' AND deadline_at IS NOT NULL"
Index(
    "ix_step_attempts_deadline",
    StepAttempt.deadline_at,
    postgresql_where=text(ATTEMPT_DEADLINE_PREDICATE),
    sqlite_where=text(ATTEMPT_DEADLINE_PREDICATE),
)


class FanOutMember(Base):
    """One member of one attempt of a fan-out step run by handlers: what became of it."""

    __tablename__ = "fan_out_members"

    saga_id: Mapped[str] = mapped_column(ForeignKey("saga_runs.id"), primary_key=True)
    step_index: Mapped[int] = mapped_column(primary_key=True)
    phase: Mapped[Phase] = mapped_column(_status(Phase), primary_key=True)
    attempt: Mapped[int] = mapped_column(primary_key=True)
    member: Mapped[int] = mapped_column(primary_key=True)
    each: Mapped[Any | None]
    outcome: Mapped[Outcome] = mapped_column(_status(Outcome), default=Outcome.running)
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None]
    finished_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """A message to publish once the transaction that wrote it has committed.

    Rows are deleted when the broker has taken them; a row that stays is re-published.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    publish_count: Mapped[int] = mapped_column(default=0)


class Timer(Base):
    """Something that must happen later (a retry, a deadline), durable across restarts."""

    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Unique so that scheduling the same thing twice keeps one timer, and cancelling finds it.
    key: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    saga_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # A work item's SLA clock (warning, breach, escalation steps); deleted when the item ends.
    item_id: Mapped[str | None] = mapped_column(String(96), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    due_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# PostgreSQL issues fencing tokens from this sequence; SQLite keeps the last one in
# fencing_counters under GLOBAL_SCOPE.
FENCING_SEQUENCE = Sequence("fencing_tokens", metadata=Base.metadata)
GLOBAL_SCOPE = "*"


class FencingCounter(Base):
    """Last fencing token issued (SQLite); survives a Redis that lost its data."""

    __tablename__ = "fencing_counters"

    scope: Mapped[str] = mapped_column(String(400), primary_key=True)
    last_token: Mapped[int] = mapped_column(BigInteger, default=0)


class RedisGeneration(Base):
    """The generation id the orchestrator last wrote into Redis (a marker key): a Redis found
    without it, or with another, lost its data (see orchestrator.service.redis_loss)."""

    __tablename__ = "redis_generations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A message nobody could act on, kept with the reason instead of retried forever."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# The Core tables behind the hot paths' bulk INSERTs and DELETEs.
SAGAS = cast(Table, SagaRun.__table__)
STEPS = cast(Table, StepRun.__table__)
ATTEMPTS = cast(Table, StepAttempt.__table__)
OUTBOX = cast(Table, OutboxMessage.__table__)
TIMERS = cast(Table, Timer.__table__)
FAN_OUT_MEMBERS = cast(Table, FanOutMember.__table__)
