"""SQLAlchemy tables of traceability (the work-items spec §13): a tenant's goal registry, the
actions agents took on work items, and the artifacts those actions produced.

Actions and artifacts are only ever added: their ids (``ACT-…``, ``ART-…``) are derived from what
they record, so a row is never rewritten under its id."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Index, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.tables import BigId
from models.work_tables import ID_LENGTH

# ACT-{item id}-{agent id}-{sequence}: an item id, an agent id (255) and room for the rest.
ACTION_ID_LENGTH = 400
# ART-{action id}-{type}-{hash}.
ARTIFACT_ID_LENGTH = 450


class GoalRow(Base):
    """A goal a tenant registered: what work items name in ``relatedGoals``."""

    __tablename__ = "goals"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(96), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    # active: work is expected to serve it; retired: no longer (the validator stops asking for items).
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentActionRow(Base):
    """One action an agent took on a work item (claim, start, complete, fail, evidence), written
    in the transaction that audited it. ``sequence`` counts the agent's actions on the item."""

    __tablename__ = "agent_actions"
    __table_args__ = (
        # The sequence is unique per item and agent: two writers that raced for one would collide here.
        UniqueConstraint("item_id", "agent_id", "sequence"),
        Index("ix_agent_actions_tenant_item", "tenant", "item_id"),
    )

    id: Mapped[str] = mapped_column(String(ACTION_ID_LENGTH), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    agent_id: Mapped[str] = mapped_column(String(255))
    sequence: Mapped[int]
    # The audit trail's action: claimed, started, completed, failed, evidence.
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactRow(Base):
    """What an agent's action produced: the evidence it attached, or a completion's output.
    Only the digest is kept here; the content stays where it lives (the evidence, the item's result)."""

    __tablename__ = "artifacts"
    __table_args__ = (
        Index("ix_artifacts_action", "action_id"),
        Index("ix_artifacts_tenant_item", "tenant", "item_id"),
    )

    id: Mapped[str] = mapped_column(String(ARTIFACT_ID_LENGTH), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    action_id: Mapped[str] = mapped_column(String(ACTION_ID_LENGTH))
    artifact_type: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    # What it is within workyard: the evidence id (evidence), null for an output (the item's result).
    ref: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TraceEpochRow(Base):
    """When this database began recording actions (one row, written by the migration that made the
    tables): an agent's work audited before then has no actions, and validation does not judge it."""

    __tablename__ = "trace_epoch"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column()


class TraceBreakRow(Base):
    """A broken link of a traceability chain, found by the real-time check (as an item was created,
    moved or completed) or by the nightly validation. Recorded once per broken link (its check
    and subject): a break found again, night after night, is the same break, not a new one."""

    __tablename__ = "trace_breaks"
    __table_args__ = (
        UniqueConstraint("tenant", "check_name", "subject"),
        Index("ix_trace_breaks_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    # The validation's check it fails (goalToWorkItemLinkage, workItemToActionLinkage, ...).
    check_name: Mapped[str] = mapped_column(String(40))
    # What is broken, as that check lists it: a goal code, an item, action or compensation id.
    subject: Mapped[str] = mapped_column(String(ARTIFACT_ID_LENGTH))
    # The work item it concerns (null when none could be named: an id held by no row of ours).
    item_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    detail: Mapped[str] = mapped_column(Text)
    # realtime or nightly.
    found_by: Mapped[str] = mapped_column(String(16))
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The remediation item opened for it (null: none could be, the item being gone).
    remediation_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))


GOALS = cast(Table, GoalRow.__table__)
TRACE_EPOCH = cast(Table, TraceEpochRow.__table__)
ACTIONS = cast(Table, AgentActionRow.__table__)
ARTIFACTS = cast(Table, ArtifactRow.__table__)
TRACE_BREAKS = cast(Table, TraceBreakRow.__table__)
