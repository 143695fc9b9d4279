"""Celery workers in the registry: the presence records workers write to Redis (a worker host
has no database credentials), folded into agents of tenant ``*``.

A worker for capabilities X and Y is a ``stateless_tool_caller`` that declares X and Y, with its
pool's size as capacity. Its registration is the orchestrator's (``system:celery``): an operator
may refine the rest of its spec (autonomy, budget, ...), which the fold keeps; the fold only
keeps capabilities and capacity in step with what the worker announces.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agent_tables import Agent
from models.agents import AgentSpec, AgentType, CapabilityDecl
from models.base import utcnow
from models.principal import ALL_TENANTS
from models.worker_presence import WorkerPresence
from orchestrator.agents.heartbeats import TOUCH_EVERY_S
from orchestrator.agents.records import set_spec, spec_of, write_capabilities

log = logging.getLogger(__name__)

REGISTRANT = "system:celery"
MAX_CAPACITY = 10_000  # AgentSpec's bound


def fold_workers(session: Session, presences: Sequence[WorkerPresence], *, now: datetime | None = None) -> int:
    """Register or refresh the agents of the workers present now, and mark them live (source
    celery). Returns how many rows it wrote. A worker an operator deregistered stays out until it
    restarts; a worker whose name a tenant's agent holds is left out (ids are either ``*`` or
    tenants' own)."""
    now = now or utcnow()
    present = {p.name: p for p in presences}
    if not present:
        return 0
    rows = session.scalars(select(Agent).where(Agent.id.in_(sorted(present)))).all()
    ours = {r.id: r for r in rows if r.tenant == ALL_TENANTS}
    taken = {r.id for r in rows if r.tenant != ALL_TENANTS and r.deregistered_at is None}
    written = 0
    beating: list[str] = []
    for name, presence in sorted(present.items()):
        if name in taken:
            log.warning("worker %s is not registered as an agent: a tenant's agent has that id", name)
            continue
        row = ours.get(name)
        if row is None:
            written += _insert(session, presence, now)
            continue
        if row.deregistered_at is not None:
            # An operator's deregistration holds until the worker restarts; the fold's own (a
            # worker not heard from for long) ends as soon as it is heard from again.
            if row.deregistered_by == REGISTRANT:
                back = presence.beat_at > row.deregistered_at
            else:
                back = presence.is_newer_than(row.deregistered_at)
            if not back:
                continue
            _revive(session, row, presence, now)
            written += 1
            continue
        spec = _refreshed(spec_of(row), presence)
        if spec != spec_of(row):
            set_spec(row, spec)
            row.version += 1
            row.updated_at = now
            write_capabilities(session, row, spec)
            written += 1
        beating.append(name)
    if beating:
        # One statement for every worker still beating; none writes while its mark is fresh.
        marked = session.execute(
            update(Agent)
            .where(
                Agent.tenant == ALL_TENANTS,
                Agent.id.in_(beating),
                Agent.deregistered_at.is_(None),
                or_(
                    Agent.last_heartbeat_at.is_(None),
                    Agent.last_heartbeat_at < now - timedelta(seconds=TOUCH_EVERY_S),
                ),
            )
            .values(last_heartbeat_at=now, last_heartbeat_source="celery")
            .execution_options(synchronize_session=False)
        )
        written += int(getattr(marked, "rowcount", 0) or 0)
    return written


def forget_gone_workers(session: Session, *, after_s: float, now: datetime | None = None) -> list[str]:
    """Deregister the workers' agents not heard from for ``after_s`` seconds: a worker is named
    after its host, and every deploy under new hostnames would leave the old names listed as dead
    forever. The rows stay; a worker that comes back under a name is registered again by the fold
    (its start is newer than the deregistration). Returns the names forgotten."""
    now = now or utcnow()
    gone = session.scalars(
        select(Agent)
        .where(
            Agent.tenant == ALL_TENANTS,
            Agent.registered_by == REGISTRANT,
            Agent.deregistered_at.is_(None),
            or_(Agent.last_heartbeat_at.is_(None), Agent.last_heartbeat_at < now - timedelta(seconds=after_s)),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for row in gone:
        row.deregistered_at = now
        row.deregistered_by = REGISTRANT
    if gone:
        log.info("forgot %d Celery worker agent(s) not heard from for %.0f s", len(gone), after_s)
    return [row.id for row in gone]


def spec_for(presence: WorkerPresence) -> AgentSpec:
    """The spec of a worker newly seen."""
    return AgentSpec(
        agent_type=AgentType.stateless_tool_caller,
        capabilities=[CapabilityDecl(name=c) for c in _capabilities(presence)],
        capacity=_capacity(presence),
    )


def _refreshed(spec: AgentSpec, presence: WorkerPresence) -> AgentSpec:
    """``spec`` with the worker's capabilities (keeping the proficiency an operator gave those it
    still has) and capacity; the rest as it is."""
    known = {c.name: c for c in spec.capabilities}
    capabilities = [known.get(c) or CapabilityDecl(name=c) for c in _capabilities(presence)]
    return spec.model_copy(update={"capabilities": capabilities, "capacity": _capacity(presence)})


def _insert(session: Session, presence: WorkerPresence, now: datetime) -> int:
    row = Agent(tenant=ALL_TENANTS, id=presence.name, spent=0.0, version=1)
    _fill(row, presence, now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return 0  # another orchestrator process registered it a moment ago; the next fold refreshes it
    write_capabilities(session, row, spec_of(row))
    return 1


def _revive(session: Session, row: Agent, presence: WorkerPresence, now: datetime) -> None:
    _fill(row, presence, now)
    row.version += 1
    row.deregistered_at = row.deregistered_by = None
    row.spent = 0.0
    row.period_start = None
    write_capabilities(session, row, spec_of(row))


def _fill(row: Agent, presence: WorkerPresence, now: datetime) -> None:
    set_spec(row, spec_for(presence))
    row.registered_by = REGISTRANT
    row.registered_at = row.updated_at = now
    row.last_heartbeat_at = now
    row.last_heartbeat_source = "celery"


def _capabilities(presence: WorkerPresence) -> list[str]:
    # As CapabilityDecl holds them: 1-200 characters, each once, in the worker's order.
    return [c for c in dict.fromkeys(presence.capabilities) if 0 < len(c) <= 200][:200]


def _capacity(presence: WorkerPresence) -> int:
    return max(1, min(presence.concurrency, MAX_CAPACITY))
