"""SQLAlchemy tables of routing: the rules (every version kept), the decisions (the audit of every
assignment the router made or could not make), and the round-robin rules' cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.tables import BigId

RULE_ID_LENGTH = 100


class RoutingRuleRow(Base):
    """One version of one routing rule; immutable once written. The latest version of an id is
    the live one (``is_latest``); disabling a rule writes a version with ``enabled`` false."""

    __tablename__ = "routing_rules"
    __table_args__ = (
        # What the router reads per item: a tenant's (and the operators') live, enabled rules.
        Index("ix_routing_rules_live", "tenant", "is_latest", "enabled"),
    )

    # The tenant whose items it routes; "*": an operator's rule, tried for every tenant.
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(RULE_ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[int]
    enabled: Mapped[bool]
    is_latest: Mapped[bool]
    # The rule's definition (models.routing.RoutingRuleSpec as JSON), and its SHA-256: the router
    # keeps parsed rules by it, so a version is parsed once per process, not once per item.
    body: Mapped[dict[str, Any]]
    body_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoutingDecision(Base):
    """One routing decision about one work item: the spec's reason, ruleId, candidates and chosenAssignee."""

    __tablename__ = "routing_decisions"
    __table_args__ = (Index("ix_routing_decisions_item", "item_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(96))
    tenant: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    rule_tenant: Mapped[str | None] = mapped_column(String(64))
    rule_id: Mapped[str | None] = mapped_column(String(RULE_ID_LENGTH))
    rule_version: Mapped[int | None]
    strategy: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    # [{ref, verdict, check, why}], chosen first; beyond the listed ones, counts by check.
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    omitted: Mapped[dict[str, Any]] = mapped_column(default=dict)
    chosen_assignee: Mapped[str | None] = mapped_column(String(300))
    previous_assignee: Mapped[str | None] = mapped_column(String(300))
    actor: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class RoutingCursor(Base):
    """Where a round-robin rule's turn stands for one tenant's items: the agent it chose last."""

    __tablename__ = "routing_cursors"

    rule_tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(RULE_ID_LENGTH), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_ref: Mapped[str] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


RULES = cast(Table, RoutingRuleRow.__table__)
DECISIONS = cast(Table, RoutingDecision.__table__)
CURSORS = cast(Table, RoutingCursor.__table__)
