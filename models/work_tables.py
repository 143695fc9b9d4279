"""SQLAlchemy tables of the work-item system: items, their dependencies and labels, the audit
trail, registered types, and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Table, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.tables import BigId

ID_LENGTH = 96
OFFERED_PREDICATE = "is_open = {true} AND deleted_at IS NULL AND claimed_by_id IS NULL AND assignee_id IS NULL"
# An agent's load as routing counts it (``orchestrator.routing.loads``): the open items it holds a
# claim on, and the open items routed to it that it has not taken up yet.
# The audit actions the traceability validation reads by tenant (``orchestrator.traceability.validate``).
TRACED_EVENTS_PREDICATE = "action IN ('claimed', 'completed', 'evidence', 'failed', 'gate_passed', 'started')"
AGENT_CLAIMS_PREDICATE = "claimed_by_type = 'agent' AND is_open = {true} AND deleted_at IS NULL"
AGENT_WAITING_PREDICATE = (
    "assignee_type = 'agent' AND is_open = {true} AND deleted_at IS NULL "
    "AND claimed_by_id IS NULL AND started_at IS NULL"
)


class WorkItem(Base):
    """A work item: work offered to people or agents, claimed under a lease, moved through its lifecycle."""

    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotence_key"),
        # The next-work doc's three indexes.
        Index(
            "ix_work_items_assignee_next",
            "assignee_type",
            "assignee_id",
            "status",
            "type",
            "deleted_at",
            "created_at",
        ),
        Index(
            "ix_work_items_reporter_next",
            "reporter_type",
            "reporter_id",
            "status",
            "type",
            "deleted_at",
            "created_at",
        ),
        Index("ix_work_items_parent", "parent_id", "type", "deleted_at"),
        # Queues: open, unclaimed items of a tenant by offer, best first.
        Index("ix_work_items_queue", "tenant", "is_open", "claimed_by_id", "offer_type", "priority", "created_at"),
        Index("ix_work_items_claimed", "claimed_by_type", "claimed_by_id", "is_open"),
        Index("ix_work_items_tenant_created", "tenant", "created_at"),
        Index("ix_work_items_lease", "lease_expires_at"),
        Index("ix_work_items_saga", "saga_id", "saga_step_index"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    code: Mapped[str] = mapped_column(String(ID_LENGTH))
    tenant: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    lifecycle: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(default=50)
    status: Mapped[str] = mapped_column(String(32))
    # False once the status is terminal: queues and claims only look at open items.
    is_open: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(300))
    reporter_type: Mapped[str | None] = mapped_column(String(16))
    reporter_id: Mapped[str | None] = mapped_column(String(255))
    assignee_type: Mapped[str | None] = mapped_column(String(16))
    assignee_id: Mapped[str | None] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # "metadata" is taken by SQLAlchemy's declarative base; the column keeps the spec's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    result: Mapped[Any | None]
    reason: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None]
    idempotence_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The offer: to people holding a scope (and optionally in a group), or to agents with a capability.
    offer_type: Mapped[str | None] = mapped_column(String(16))
    offer_scope: Mapped[str | None] = mapped_column(String(200))
    offer_group: Mapped[str | None] = mapped_column(String(200))
    offer_capability: Mapped[str | None] = mapped_column(String(200))
    # The claim. Every claim bumps lease_epoch, so a stale holder's calls can be refused.
    claimed_by_type: Mapped[str | None] = mapped_column(String(16))
    claimed_by_id: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None]
    lease_epoch: Mapped[int] = mapped_column(default=0)
    lease_expires_at: Mapped[datetime | None]
    # The TTL the claim asked for: a heartbeat without one keeps it (null: the server default).
    lease_ttl_s: Mapped[float | None] = mapped_column(Float)
    # The item's own risk level, where it raises its type's (models.agents.RiskLevel); null: the type's.
    risk_level: Mapped[str | None] = mapped_column(String(16))
    # What the holder's heartbeats last reported, and when that last changed (stall detection).
    progress: Mapped[Any | None]
    progress_at: Mapped[datetime | None]
    stalled_at: Mapped[datetime | None]
    # The item's own stall ladder (models.sla.StallSpec); null: the server default.
    stall: Mapped[dict[str, Any] | None]
    version: Mapped[int] = mapped_column(default=1)
    # The SLA, if any, and what it has done so far (the spec's reporting fields).
    sla: Mapped[dict[str, Any] | None]
    sla_warned_at: Mapped[datetime | None]
    sla_breached_at: Mapped[datetime | None]
    sla_breach_count: Mapped[int] = mapped_column(default=0)
    # A human-in-the-loop requirement the routing rule that placed the item put on it:
    # {"required", "gates", "rule_id"} (the gates themselves are enforced elsewhere); null: none.
    hitl: Mapped[dict[str, Any] | None]
    # The spec's §2 fields (models.item_plans): RACI, goal codes, risk assessment, templates applied.
    raci: Mapped[dict[str, Any] | None]
    related_goals: Mapped[list[str]] = mapped_column(JSON, default=list)
    risk_assessment: Mapped[dict[str, Any] | None]
    templates_applied: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Item-level timeouts (§3), each a durable timer: from its start, and from its creation.
    timeout_ms: Mapped[int | None] = mapped_column(BigInteger)
    overall_timeout_ms: Mapped[int | None] = mapped_column(BigInteger)
    # How its external effects are undone (§6, models.item_plans.CompensationPlan); null: no plan.
    compensation: Mapped[dict[str, Any] | None]
    # Set when a saga step waits on the item: which attempt of which step its outcome answers.
    saga_id: Mapped[str | None] = mapped_column(String(36))
    saga_step: Mapped[str | None] = mapped_column(String(200))
    saga_step_index: Mapped[int | None]
    saga_phase: Mapped[str | None] = mapped_column(String(16))
    saga_attempt: Mapped[int | None]
    saga_member: Mapped[int | None]
    # The trace (OpenTelemetry) of the saga that opened it, if that saga was traced.
    trace_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


# The order of every queue: most urgent first, then oldest.
QUEUE_ORDER = (WorkItem.priority.desc(), WorkItem.created_at, WorkItem.id)

# The open queue, in queue order: what claim-next walks. Partial, so it holds only the open,
# free, unassigned items, however many closed ones the table keeps. The predicate is written as
# each database renders the claim query's conditions, so both planners match it.
Index(
    "ix_work_items_offered",
    WorkItem.tenant,
    WorkItem.offer_type,
    *QUEUE_ORDER,
    postgresql_where=text(OFFERED_PREDICATE.format(true="true")),
    sqlite_where=text(OFFERED_PREDICATE.format(true="1")),
)

# Each agent's load, counted for every candidate a routing decision reads: partial, so a count is
# a probe into the few open items of agents whatever else the table keeps, and it reads only the
# index (where the visibility map allows) for the conditions the predicate leaves (tenant, lease).
Index(
    "ix_work_items_agent_claims",
    WorkItem.claimed_by_id,
    WorkItem.tenant,
    WorkItem.lease_expires_at,
    postgresql_where=text(AGENT_CLAIMS_PREDICATE.format(true="true")),
    sqlite_where=text(AGENT_CLAIMS_PREDICATE.format(true="1")),
)
Index(
    "ix_work_items_agent_waiting",
    WorkItem.assignee_id,
    WorkItem.tenant,
    WorkItem.id,
    postgresql_where=text(AGENT_WAITING_PREDICATE.format(true="true")),
    sqlite_where=text(AGENT_WAITING_PREDICATE.format(true="1")),
)


class WorkItemCompensation(Base):
    """One run of a work item's compensation plan: the saga that runs it, and the request that
    asked for it (its idempotence key). At most one runs per item at a time."""

    __tablename__ = "work_item_compensations"
    __table_args__ = (
        UniqueConstraint("item_id", "idempotence_key"),
        Index("ix_work_item_compensations_item", "item_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    tenant: Mapped[str] = mapped_column(String(64))
    saga_id: Mapped[str] = mapped_column(String(36), unique=True)
    idempotence_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # running, completed (every action ran) or failed (an action gave up: a remediation item was opened)
    status: Mapped[str] = mapped_column(String(16), default="running")
    requested_by: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str | None] = mapped_column(Text)
    # The item's status when it was asked (where it returns to if the compensation fails).
    from_status: Mapped[str] = mapped_column(String(32))
    remediation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class WorkItemDependency(Base):
    """``item_id`` cannot start before ``depends_on_id`` is resolved (done or cancelled)."""

    __tablename__ = "work_item_dependencies"

    item_id: Mapped[str] = mapped_column(ForeignKey("work_items.id"), primary_key=True)
    depends_on_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, index=True)


class WorkItemLabel(Base):
    """One label on one work item."""

    __tablename__ = "work_item_labels"

    item_id: Mapped[str] = mapped_column(ForeignKey("work_items.id"), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class WorkItemEvent(Base):
    """The audit trail: every change to a work item, who made it, when, from and to what."""

    __tablename__ = "work_item_events"
    __table_args__ = (
        Index("ix_work_item_events_item", "item_id", "id"),
        # A tenant's rows the traceability validation reads (agents' work, gate passages): without
        # it, validating a small tenant reads every tenant's audit trail. Partial: most other rows
        # (transitions, heartbeats, SLA notes) are written without touching it.
        Index(
            "ix_work_item_events_traced",
            "tenant",
            "action",
            postgresql_where=text(TRACED_EVENTS_PREDICATE),
            sqlite_where=text(TRACED_EVENTS_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    tenant: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(300))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkItemTypeRow(Base):
    """A work-item type an operator registered (the built-in ones live in code)."""

    __tablename__ = "work_item_types"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    json_schema: Mapped[dict[str, Any]]
    lifecycle: Mapped[str] = mapped_column(String(32))
    # What an agent needs to be given its items: capability names, and a risk level
    # (models.agents.RiskLevel) that sets the least autonomy.
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    risk_level: Mapped[str] = mapped_column(String(16), default="low")
    # What gates every item of the type: a policy id (resolved per item's tenant), a hitl
    # requirement ({required, gates}).
    approval_policy_id: Mapped[str | None] = mapped_column(String(100))
    hitl: Mapped[dict[str, Any] | None]
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token: only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_type: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Webhook(Base):
    """An outgoing webhook a tenant registered: events POSTed to ``url``, signed with its secret.

    The secret is stored encrypted (``secret_encrypted``, see ``orchestrator.storage.secret_box``).
    A disabled webhook hears no events and its pending deliveries wait; a deleted one is kept (the
    delivery log points at it) without its secret, and nothing shows it.
    """

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret_encrypted: Mapped[str] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


# Deliveries a sender leased (being POSTed, or held by a sender that died, until the lease lapses).
DELIVERY_LEASED_PREDICATE = "leased_until IS NOT NULL"


class WebhookDelivery(Base):
    """One event for one webhook, and how delivering it went (the delivery log).

    ``leased_until`` is set while a sender POSTs it (and cleared when the outcome is recorded):
    every sender counts a tenant's live leases, so the per-tenant cap holds across processes.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index(
            "ix_webhook_deliveries_leased",
            "leased_until",
            postgresql_where=text(DELIVERY_LEASED_PREDICATE),
            sqlite_where=text(DELIVERY_LEASED_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]


WORK_ITEMS = cast(Table, WorkItem.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
DEPENDENCIES = cast(Table, WorkItemDependency.__table__)
LABELS = cast(Table, WorkItemLabel.__table__)
EVENTS = cast(Table, WorkItemEvent.__table__)
COMPENSATIONS = cast(Table, WorkItemCompensation.__table__)


class ItemTemplateRow(Base):
    """A registered work-item template version (``models.item_templates``): as given, and as it
    applies with what it extends merged in. Never updated: a change is a new version."""

    __tablename__ = "work_item_templates"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    effective: Mapped[dict[str, Any]]
    digest: Mapped[str] = mapped_column(String(64))  # of the spec as given: the same again is a no-op
    schema_checked: Mapped[bool]
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
