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
from models.principal import Principal, Scope
from orchestrator.agents.access import check_may_write, check_write
from orchestrator.agents.records import check_overlap, find, set_spec, spec_of, write_capabilities
from orchestrator.errors import Conflict, Forbidden

# What an agent may change of its own registration (the rest is its operator's to set).
SELF_CHANGEABLE = frozenset({"capabilities", "capacity"})


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
        if itself and row.deregistered_by is not None and row.deregistered_by != principal.ref:
            raise Forbidden(
                f"agent {body.id!r} was deregistered by {row.deregistered_by}; only a token with agents:write "
                "may register it again",
                details=[{"path": "id", "message": f"deregistered by {row.deregistered_by}"}],
            )
        # Registered anew: nothing of the old registration's liveness. Its spend stays: a budget's
        # period is not restarted by leaving and coming back (a new period starts from 0 anyway).
        _start(row, spec, principal, now)
        row.version += 1
        row.deregistered_at = None
        row.deregistered_by = None
        row.last_heartbeat_at = row.last_heartbeat_source = None
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
    itself = check_write(principal, row.tenant, row.id, declared)
    # Both preconditions hold, when both are given: a stale one must not be overruled by the other.
    for expected in (body.version, if_match):
        if expected is not None and expected != row.version:
            raise Conflict(
                f"agent {agent_id!r} is at version {row.version}, not {expected}; read it again and retry",
                details=[{"path": "version", "message": f"current version is {row.version}"}],
            )
    if itself and not principal.has(Scope.agents_write.value):
        # What bounds an agent (autonomy, budget, data, safety) and the roles and groups rules route
        # by are the operator's to set: the agent itself may change what it can do and how much.
        bounded = sorted(set(changes) - SELF_CHANGEABLE)
        if bounded:
            raise Forbidden(
                f"an agent may change only its {', '.join(sorted(SELF_CHANGEABLE))} itself; "
                f"{', '.join(bounded)} need a token with agents:write",
                details=[{"path": name, "message": "needs agents:write"} for name in bounded],
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
    row.deregistered_by = principal.ref
    return row
