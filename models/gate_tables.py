"""SQLAlchemy tables of policy gates: policies (every version kept), approvals, evidence and
validator runs. Approvals and evidence are only ever added: nothing updates or deletes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class PolicyRow(Base):
    """One version of one policy; immutable once written. The latest version of an id is the live one."""

    __tablename__ = "policies"
    __table_args__ = (Index("ix_policies_live", "tenant", "is_latest"),)

    # The tenant it belongs to; "*": an operator's, shared by every tenant (a tenant's own of the same id wins).
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    is_latest: Mapped[bool]
    body: Mapped[dict[str, Any]]
    body_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalRow(Base):
    """One decision (approve or reject) on the gate out of the status the item was in."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_item", "item_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(96))
    policy_id: Mapped[str | None] = mapped_column(String(100))
    policy_version: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(32))
    step: Mapped[int | None]
    role: Mapped[str | None] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str] = mapped_column(String(300))
    approver_type: Mapped[str] = mapped_column(String(16))
    justification: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvidenceRow(Base):
    """One evidence object (the spec's schema); immutable. ``body_hash`` tells a retry (same body)
    from a conflicting write under the same id."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_item", "item_id", "created_at"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(96))
    policy_id: Mapped[str | None] = mapped_column(String(100))
    policy_version: Mapped[int | None]
    evidence_type: Mapped[str] = mapped_column(String(64))
    checks: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ValidationRow(Base):
    """One run of a check's validator: dispatched to ``cap.<capability>``, settled by its report."""

    __tablename__ = "validations"
    __table_args__ = (Index("ix_validations_item", "item_id", "check_name", "requested_at"),)

    # Also the saga_id of its dispatch and report (models.messages), so it fits that column.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(96))
    policy_id: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[int]
    check_name: Mapped[str] = mapped_column(String(100))
    handler: Mapped[str] = mapped_column(String(200))
    capability: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[Any | None]
    error: Mapped[str | None] = mapped_column(Text)
    evidence_id: Mapped[str | None] = mapped_column(String(120))
    remediation_item_id: Mapped[str | None] = mapped_column(String(96))
    requested_by: Mapped[str] = mapped_column(String(300))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
