"""Listing the registry: a page of the agents a principal may see, filtered, in the order of
tenant and id, with an opaque cursor; and reading one agent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, literal, or_, select
from sqlalchemy.orm import Session

from models.agent_api import AgentPage, AgentRead
from models.agent_tables import AGENT_CAPABILITIES, Agent
from models.agents import AgentType, Liveness
from models.base import utcnow
from models.principal import ALL_TENANTS, Principal
from orchestrator.agents.access import check_list, check_read
from orchestrator.agents.liveness import Thresholds, liveness_is
from orchestrator.agents.records import find, visible_to
from orchestrator.agents.views import read_agents
from orchestrator.errors import Forbidden
from orchestrator.storage.cursors import decode_cursor, encode_cursor


def list_agents(
    session: Session,
    principal: Principal,
    *,
    thresholds: Thresholds,
    agent_type: AgentType | None = None,
    capability: str | None = None,
    liveness: Liveness | None = None,
    tenant: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    now: datetime | None = None,
) -> AgentPage:
    """The registered agents the principal may see: a tenant's token its tenant's own and the
    operators' (``*``), an all-tenant token every one (or ``tenant``'s alone)."""
    check_list(principal)
    now = now or utcnow()
    query = select(Agent).where(Agent.deregistered_at.is_(None), visible_to(principal))
    if tenant is not None:
        if tenant != ALL_TENANTS and not principal.sees(tenant):
            raise Forbidden(f"this token is for tenant {principal.tenant!r}, not {tenant!r}")
        query = query.where(Agent.tenant == tenant)
    if agent_type is not None:
        query = query.where(Agent.agent_type == agent_type.value)
    if capability is not None:
        declared = AGENT_CAPABILITIES.c
        query = query.where(
            select(literal(1))
            .where(declared.tenant == Agent.tenant, declared.agent_id == Agent.id, declared.name == capability)
            .exists()
        )
    if liveness is not None:
        query = query.where(liveness_is(liveness, now, thresholds))
    if cursor:
        last_tenant, last_id = decode_cursor(cursor, str, str)
        query = query.where(or_(Agent.tenant > last_tenant, and_(Agent.tenant == last_tenant, Agent.id > last_id)))
    rows = session.scalars(query.order_by(Agent.tenant, Agent.id).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].tenant, page[-1].id) if len(rows) > limit else None
    return AgentPage(agents=read_agents(session, page, now, thresholds), next_cursor=next_cursor)


def get_agent(
    session: Session,
    principal: Principal,
    agent_id: str,
    *,
    thresholds: Thresholds,
    tenant: str | None = None,
    now: datetime | None = None,
) -> AgentRead:
    check_read(principal, None, agent_id)
    row = find(session, principal, agent_id, tenant)
    check_read(principal, row.tenant, row.id)
    return read_agents(session, [row], now or utcnow(), thresholds)[0]
