"""SQLAlchemy tables of the agent registry (work-items spec §12): registered agents, and the
capabilities each declares (a table of their own, so that "agents with capability X" is an
indexed lookup on either database rather than a search inside JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Float, Index, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

# As long as a token's principal id (api_tokens.principal_id): an agent is registered under it.
AGENT_ID_LENGTH = 255


class Agent(Base):
    """A registered agent: its spec (``models.agents.AgentSpec`` as JSON), when it was last heard
    from, and what it spent in its budget's current period.

    ``tenant`` is the tenant it serves, or ``*`` for an operator's agent that serves every tenant.
    A deregistered agent keeps its row (``deregistered_at`` set) so that registering it again is
    an ordinary registration; nothing lists it meanwhile.
    """

    __tablename__ = "agents"
    __table_args__ = (
        # Listing a tenant's agents of one type, in id order (the primary key serves the rest).
        Index("ix_agents_tenant_type", "tenant", "agent_type", "id"),
        # A principal's agent by id alone: marking it live, its spend, the ``*``/tenant overlap check.
        Index("ix_agents_id", "id"),
    )

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(AGENT_ID_LENGTH), primary_key=True)
    agent_type: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]]
    registered_by: Mapped[str] = mapped_column(String(300))
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Grows with every change of the spec: an update may name the version it read (409 otherwise).
    version: Mapped[int] = mapped_column(default=1)
    last_heartbeat_at: Mapped[datetime | None]
    last_heartbeat_source: Mapped[str | None] = mapped_column(String(16))  # http, mcp or celery
    deregistered_at: Mapped[datetime | None]
    # Who took it out: an agent may register itself again, but not undo an operator's decision.
    deregistered_by: Mapped[str | None] = mapped_column(String(300))
    # Spent in the budget's period that began at period_start; a later period starts from 0.
    spent: Mapped[float] = mapped_column(Float, default=0.0)
    period_start: Mapped[datetime | None]


class AgentCapability(Base):
    """One capability one agent declares (its proficiency stays in the agent's spec)."""

    __tablename__ = "agent_capabilities"
    __table_args__ = (Index("ix_agent_capabilities_name", "name", "tenant", "agent_id"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(AGENT_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)


class FleetStamp(Base):
    """A tenant's registry changed (an agent registered, changed or left): a new ``stamp``.

    The router keeps each tenant's agents and their specs in memory, and reads the stamps of the
    tenant and of ``*`` with every decision, in the statement that reads the agents' load: a
    decision costs one round trip for the candidates, and a registration reaches the next one.
    A stamp is random, not a counter, so that it never matches a fleet read from another database.
    """

    __tablename__ = "agent_fleet_stamps"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamp: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


AGENTS = cast(Table, Agent.__table__)
FLEET_STAMPS = cast(Table, FleetStamp.__table__)
AGENT_CAPABILITIES = cast(Table, AgentCapability.__table__)
