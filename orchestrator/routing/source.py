"""The one seam through which routing reads the agents it may choose from: the agent registry's
candidates (registered agents serving the tenant, with their load, liveness and spend).

The registry's ``candidates()`` reads every agent serving the tenant and parses each one's spec;
with a thousand agents that is most of a decision's time. A rule that needs capabilities can only
choose agents that declare them, so :func:`pool` reads the same candidates for those agents only
(the registry's ``agent_capabilities`` index), in one statement with their loads, and keeps parsed
specs per agent version. It uses the registry's tables and helpers (``liveness``, ``spent_now``)
and counts load as the registry's ``loads`` does; ``tests/integration/workitems/
test_routing_source.py`` holds it equal to ``candidates()`` (plus the items routed to an agent
and not claimed yet, which routing counts as load).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from models.agent_tables import AGENT_CAPABILITIES, AGENTS, Agent
from models.agents import AgentSpec, Candidate
from models.principal import ALL_TENANTS
from models.work_tables import WORK_ITEMS
from orchestrator import agents
from orchestrator.agents.liveness import Thresholds, liveness_at
from orchestrator.agents.periods import spent_now
from orchestrator.agents.workers import REGISTRANT as WORKERS
from orchestrator.routing import loads
from orchestrator.routing.decisions import MAX_LISTED
from orchestrator.routing.engine import Pool

# (tenant, id, version, updated_at) -> spec. A spec changes only with a new version (and
# updated_at, which also tells apart two databases that reuse a tenant, id and version).
_SPECS_MAX = 50_000
_specs: dict[tuple[str, str, int, datetime], AgentSpec] = {}


def candidates(session: Session, tenant: str, *, now: datetime) -> list[Candidate]:
    """The registered agents that serve ``tenant`` (its own and the operators'), as of ``now``."""
    return agents.candidates(session, tenant, now=now)


def pool(
    session: Session,
    tenant: str,
    *,
    now: datetime,
    capabilities: Collection[str] = (),
    routing: str | None = None,
    narrow_above: int = MAX_LISTED,
) -> Pool:
    """The candidates serving ``tenant`` that declare every one of ``capabilities`` (all of them
    for none), and how many serving agents were left out for lacking one.

    An agent's load here is what the registry counts (open items it holds a claim on) plus the
    open items routed to it that it has not taken up yet (unclaimed, never started), but for
    ``routing``, the item being routed: an assignment is not a claim, and without them a burst
    of items would all go to the one agent the strategy likes best, far past its capacity,
    before it claimed any.

    One statement: the agents, each one's load, and the number serving the tenant. Where no more
    than ``narrow_above`` agents serve the tenant, every one is read after all: a decision lists
    that many by name, so each gets its own verdict ("lacks capability x")."""
    found = _read(session, tenant, now, capabilities, routing)
    if found.left_out and found.left_out + len(found.agents) <= narrow_above:
        return _read(session, tenant, now, (), routing)
    return found


# Made once: an alias's columns cost more to build than the rest of the statement.
_AGENT, _EVERY = AGENTS.alias("agent"), AGENTS.alias("every")
_CLAIMED, _QUEUED = WORK_ITEMS.alias("claimed"), WORK_ITEMS.alias("queued")
# Constants written into the statement, not bound: PostgreSQL plans a prepared statement once for
# every value of a parameter, and guessed ``registered_by <> $1`` to keep one agent in a thousand,
# so its plan probed the capabilities index once per agent (twice the time of the plan it makes
# knowing the value).
_WORKERS: ColumnElement[str] = literal_column(f"'{WORKERS}'")
# The pool's statement for each number of capabilities, built once with bound parameters: building
# it anew for every decision cost more than the database took to run it.
_STATEMENTS: dict[int, Select[Any]] = {}


def _statement(needed: int) -> Select[Any]:
    statement = _STATEMENTS.get(needed)
    if statement is None:
        statement = _STATEMENTS[needed] = _build(needed)
    return statement


def _build(needed: int) -> Select[Any]:
    agent, claimed, queued = _AGENT, _CLAIMED, _QUEUED
    tenants: BindParameter[Any] = bindparam("tenants", expanding=True)
    now = bindparam("now", type_=AGENTS.c.updated_at.type)
    serves = and_(
        agent.c.tenant.in_(tenants),
        agent.c.deregistered_at.is_(None),
        agent.c.registered_by != _WORKERS,  # Celery workers never claim work items (as candidates())
    )
    # One definition of load with the hold's (``routing.loads``): claims, and items routed to it.
    load = loads.claimed(agent, claimed, now)
    waiting = loads.waiting(agent, queued, bindparam("routing", type_=WORK_ITEMS.c.id.type))
    query = select(
        agent.c.tenant,
        agent.c.id,
        agent.c.version,
        agent.c.updated_at,
        agent.c.last_heartbeat_at,
        agent.c.spent,
        agent.c.period_start,
        load.label("load"),
        waiting.label("waiting"),
        _serving(tenants).scalar_subquery().label("serving"),
    ).where(serves)
    for n in range(needed):
        query = query.where(_declares(agent, bindparam(f"capability_{n}", type_=AGENT_CAPABILITIES.c.name.type)))
    return query.order_by(agent.c.tenant, agent.c.id)


def _read(session: Session, tenant: str, now: datetime, capabilities: Collection[str], routing: str | None) -> Pool:
    names = sorted(set(capabilities))
    tenants = sorted({tenant, ALL_TENANTS})
    params: dict[str, Any] = {"tenants": tenants, "now": now, "routing": routing or ""}
    params.update({f"capability_{n}": name for n, name in enumerate(names)})
    rows = session.execute(_statement(len(names)), params).all()
    serving: int = rows[0].serving if rows else (session.scalar(_SERVING, {"tenants": tenants}) or 0)
    specs = _specs_of(session, rows)
    state_of = liveness_at(now, Thresholds.of())
    # A thousand candidates a decision: one plain loop, nothing worked out twice.
    found: list[Candidate] = []
    for agent_tenant, agent_id, _, _, beat, spent, started, load, waiting, _ in rows:
        spec = specs[(agent_tenant, agent_id)]
        found.append(
            Candidate(
                ref=f"agent:{agent_id}",
                tenant=agent_tenant,
                spec=spec,
                load=load + waiting,
                liveness=state_of(beat),
                spent=spent_now(spec, spent, started, now) if spent else 0.0,
            )
        )
    return Pool(found, left_out=serving - len(found))


def _serving(tenants: BindParameter[Any]) -> Select[int]:
    """SQL: how many agents serve the tenant (``tenants``: it and the operators' ``*``)."""
    every = _EVERY
    return (
        select(func.count())
        .select_from(every)
        .where(
            every.c.tenant.in_(tenants),
            every.c.deregistered_at.is_(None),
            every.c.registered_by != _WORKERS,
        )
    )


_SERVING = _serving(bindparam("tenants", expanding=True))


def _declares(agent: FromClause, name: BindParameter[Any]) -> ColumnElement[bool]:
    return exists().where(
        AGENT_CAPABILITIES.c.tenant == agent.c.tenant,
        AGENT_CAPABILITIES.c.agent_id == agent.c.id,
        AGENT_CAPABILITIES.c.name == name,
    )


def _specs_of(session: Session, rows: Sequence[Any]) -> dict[tuple[str, str], AgentSpec]:
    """Each row's agent's spec, parsed once per version (one query for those not parsed yet)."""
    # Read into a dict of this call's own: another thread may clear the shared one meanwhile.
    found: dict[tuple[str, str], AgentSpec] = {}
    missing: list[tuple[str, str]] = []
    for agent_tenant, agent_id, version, updated_at, *_ in rows:
        spec = _specs.get((agent_tenant, agent_id, version, updated_at))
        if spec is None:
            missing.append((agent_tenant, agent_id))
        else:
            found[(agent_tenant, agent_id)] = spec
    if missing:
        if len(_specs) + len(missing) > _SPECS_MAX:
            _specs.clear()
        bodies = session.execute(
            select(Agent.tenant, Agent.id, Agent.version, Agent.updated_at, Agent.spec).where(
                tuple_(Agent.tenant, Agent.id).in_(missing)
            )
        )
        for tenant, agent_id, version, updated_at, body in bodies:
            # Kept under the version read here: an update in between is a newer version.
            found[(tenant, agent_id)] = _specs[(tenant, agent_id, version, updated_at)] = AgentSpec.model_validate(body)
    return found
