"""Registering, updating and deregistering agents.

Registering is idempotent: the same spec again changes nothing (the API answers 200); another
spec under a registered id is a 409 that points at the update, which may name the version it read
(optimistic concurrency, as work items do). Deregistering keeps the row, marked, so the id can be
registered again later; nothing lists or routes to it meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agent_api import AgentCreate, AgentUpdate, HeartbeatSource
from models.agent_tables import Agent
from models.agents import AgentSpec
from models.base import utcnow
from models.principal import Principal
from orchestrator.agents.access import check_may_write, check_write
from orchestrator.agents.records import check_overlap, find, set_spec, spec_of, write_capabilities
from orchestrator.errors import Conflict


def register(
    session: Session,
    principal: Principal,
    body: AgentCreate,
    *,
    source: HeartbeatSource = "http",
    now: datetime | None = None,
) -> tuple[Agent, bool]:
    """Register the agent ``body`` describes; True if that made a registration (a new id, or one
    deregistered before), False if the same spec was registered already. An agent registering
    itself is live from now (heard from over ``source``)."""
    now = now or utcnow()
    tenant = body.tenant or principal.tenant
    spec = body.spec()
    itself = check_write(principal, tenant, body.id, [c.name for c in spec.capabilities])
    check_overlap(session, tenant, body.id)
    row = session.scalar(select(Agent).where(Agent.tenant == tenant, Agent.id == body.id).with_for_update())
    created = False
    if row is None:
        row = Agent(tenant=tenant, id=body.id, spent=0.0, version=1)
        _start(row, spec, principal, now)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # Registered concurrently a moment ago: judge this request against that registration.
            row = session.scalar(select(Agent).where(Agent.tenant == tenant, Agent.id == body.id).with_for_update())
            if row is None:
                raise
        else:
            created = True
    elif row.deregistered_at is not None:
        # Registered anew: a fresh start, nothing of the old registration's liveness or spend.
        _start(row, spec, principal, now)
        row.version += 1
        row.deregistered_at = None
        row.last_heartbeat_at = row.last_heartbeat_source = row.period_start = None
        row.spent = 0.0
        created = True
    if created:
        write_capabilities(session, row, spec)
    elif spec_of(row) != spec:
        raise Conflict(
            f"agent {body.id!r} of tenant {tenant!r} is registered with another spec (version {row.version}); "
            f"change it with PATCH /api/v1/agents/{body.id}",
            details=[{"path": "id", "message": f"registered at version {row.version} with another spec"}],
        )
    if itself:
        row.last_heartbeat_at = now
        row.last_heartbeat_source = source
    return row, created


def _start(row: Agent, spec: AgentSpec, principal: Principal, now: datetime) -> None:
    set_spec(row, spec)
    row.registered_by = principal.ref
    row.registered_at = now
    row.updated_at = now


def update(
    session: Session,
    principal: Principal,
    agent_id: str,
    body: AgentUpdate,
    *,
    tenant: str | None = None,
    if_match: int | None = None,
    now: datetime | None = None,
) -> Agent:
    """Change the fields ``body`` gives, each replacing the old value; with a version (in the body
    or If-Match) only if nobody changed the agent since. An unchanged spec keeps its version."""
    check_may_write(principal)
    row = find(session, principal, agent_id, tenant, lock=True)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"version"})
    declared = [c["name"] for c in changes.get("capabilities") or []]
    check_write(principal, row.tenant, row.id, declared)
    # Both preconditions hold, when both are given: a stale one must not be overruled by the other.
    for expected in (body.version, if_match):
        if expected is not None and expected != row.version:
            raise Conflict(
                f"agent {agent_id!r} is at version {row.version}, not {expected}; read it again and retry",
                details=[{"path": "version", "message": f"current version is {row.version}"}],
            )
    merged = dict(row.spec)
    for name, value in changes.items():
        if value is None and name in ("data_boundary", "safety"):
            merged.pop(name, None)  # null: back to the default (no limit, no rules)
        else:
            merged[name] = value
    spec = AgentSpec.model_validate(merged)
    if spec == spec_of(row):
        return row
    set_spec(row, spec)
    row.version += 1
    row.updated_at = now or utcnow()
    if "capabilities" in changes:
        write_capabilities(session, row, spec)
    return row


def deregister(
    session: Session, principal: Principal, agent_id: str, *, tenant: str | None = None, now: datetime | None = None
) -> Agent:
    """Take the agent out of the registry: it is listed and routed to no more."""
    check_may_write(principal)
    row = find(session, principal, agent_id, tenant, lock=True)
    check_write(principal, row.tenant, row.id)
    row.deregistered_at = now or utcnow()
    return row
