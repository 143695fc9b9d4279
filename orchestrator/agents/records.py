"""Rows of the registry: finding an agent a principal may see, keeping its capability rows in
step with its spec, and counting the live claims agents hold (their load) in one query."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from sqlalchemy import ColumnElement, Select, Text, cast, delete, func, insert, or_, select, true
from sqlalchemy.orm import Session

from models.agent_tables import AGENT_CAPABILITIES, Agent
from models.agents import AgentSpec
from models.principal import ALL_TENANTS, Principal
from models.work_tables import WorkItem
from orchestrator.errors import Conflict, NotFound


def serving(tenant: str) -> ColumnElement[bool]:
    """SQL: the agent serves ``tenant``: it is the tenant's own, or an operator's for every tenant."""
    return Agent.tenant.in_(sorted({tenant, ALL_TENANTS}))


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """SQL: the principal may see the agent (an all-tenant token sees every tenant's)."""
    return true() if principal.all_tenants else serving(principal.tenant)


def find(
    session: Session, principal: Principal, agent_id: str, tenant: str | None = None, *, lock: bool = False
) -> Agent:
    """The registered agent ``agent_id`` the principal may see; 404 for a missing, deregistered
    or invisible one alike. ``tenant`` picks among an id registered in several tenants, which
    only an all-tenant token can see at once (409 if it does not say which)."""
    query = select(Agent).where(Agent.id == agent_id, Agent.deregistered_at.is_(None), visible_to(principal))
    if tenant is not None:
        query = query.where(Agent.tenant == tenant)
    if lock:
        query = query.with_for_update()
    rows = session.scalars(query.order_by(Agent.tenant).limit(2)).all()
    if not rows:
        raise NotFound(f"no agent {agent_id!r}")
    if len(rows) > 1:
        raise Conflict(
            f"agent {agent_id!r} is registered in several tenants; name one with ?tenant=",
            details=[{"path": "tenant", "message": f"one of {', '.join(r.tenant for r in rows)}, ..."}],
        )
    return rows[0]


def check_overlap(session: Session, tenant: str, agent_id: str) -> None:
    """One agent id is either an operator's (``*``) or tenants' own, never both: claims name the
    holder by id alone, so the load and spend of both would be one."""
    query = select(Agent.tenant).where(Agent.id == agent_id, Agent.deregistered_at.is_(None))
    if tenant == ALL_TENANTS:
        query = query.where(Agent.tenant != ALL_TENANTS)
    else:
        query = query.where(Agent.tenant == ALL_TENANTS)
    other = session.scalar(query.limit(1))
    if other is not None:
        where = "for every tenant (*)" if other == ALL_TENANTS else f"in tenant {other}"
        raise Conflict(
            f"agent id {agent_id!r} is already registered {where}; an id serves every tenant or tenants of their own",
            details=[{"path": "id", "message": f"registered {where}"}],
        )


def write_capabilities(session: Session, row: Agent, spec: AgentSpec) -> None:
    """The capability rows of ``row``, replaced by those of ``spec``."""
    session.execute(
        delete(AGENT_CAPABILITIES).where(
            AGENT_CAPABILITIES.c.tenant == row.tenant, AGENT_CAPABILITIES.c.agent_id == row.id
        )
    )
    names = sorted({c.name for c in spec.capabilities})
    if names:
        session.execute(
            insert(AGENT_CAPABILITIES), [{"tenant": row.tenant, "agent_id": row.id, "name": n} for n in names]
        )


def set_spec(row: Agent, spec: AgentSpec) -> None:
    row.spec = spec.model_dump(mode="json")
    row.agent_type = spec.agent_type.value


class Keyed(Protocol):
    """An agent row, or a row of some of its columns: its tenant and id."""

    @property
    def tenant(self) -> str: ...

    @property
    def id(self) -> str: ...


def loads(
    session: Session, rows: Sequence[Keyed], now: datetime, *, among: Select[str] | None = None
) -> dict[tuple[str, str], int]:
    """(tenant, id) -> open work items the agent holds a live claim on, for every row, in one
    grouped query. An operator's agent (``*``) counts its claims in every tenant; a tenant's own
    agent those in its tenant (another tenant may have an agent of the same id). ``among``, the
    query that selected the rows' ids, replaces a list of them (thousands of bound values cost
    more to send than the query costs to run)."""
    if not rows:
        return {}
    holders = among if among is not None else sorted({r.id for r in rows})
    counted = session.execute(
        select(WorkItem.tenant, WorkItem.claimed_by_id, func.count())
        .where(
            WorkItem.claimed_by_type == "agent",
            WorkItem.claimed_by_id.in_(holders),
            WorkItem.is_open == true(),
            WorkItem.deleted_at.is_(None),
            # A lapsed lease nobody swept yet is no claim any more: anyone may take the item.
            or_(WorkItem.lease_expires_at.is_(None), WorkItem.lease_expires_at > now),
        )
        .group_by(WorkItem.tenant, WorkItem.claimed_by_id)
    ).all()
    per_tenant: dict[tuple[str, str], int] = {}
    everywhere: dict[str, int] = defaultdict(int)
    for tenant, agent_id, count in counted:
        assert agent_id is not None  # the query asked for claimed items
        per_tenant[(tenant, agent_id)] = int(count)
        everywhere[agent_id] += int(count)
    return {
        (r.tenant, r.id): everywhere[r.id] if r.tenant == ALL_TENANTS else per_tenant.get((r.tenant, r.id), 0)
        for r in rows
    }


def spec_of(row: Agent) -> AgentSpec:
    return AgentSpec.model_validate(row.spec)


@lru_cache(maxsize=8192)
def parse_spec(text: str) -> AgentSpec:
    """A spec from its stored JSON text, parsed once per distinct text: validating a spec costs
    tens of microseconds, and the router reads every agent's on every decision. The instance is
    shared by every caller that reads the same text: read it, never change it."""
    return AgentSpec.model_validate_json(text)


# The stored spec as text (both databases keep a JSON column's text), the key of parse_spec.
SPEC_TEXT = cast(Agent.spec, Text).label("spec_text")
