"""The one seam through which routing reads the agents it may choose from: the agent registry's
candidates (registered agents serving the tenant, with their load, liveness and spend).

The registry's ``candidates()`` reads every agent serving the tenant and parses each one's spec;
with a thousand agents that is most of a decision's time. Routing keeps the tenant's fleet in
memory instead (``fleet``: who serves it, their parsed specs, who declares which capability), and
:func:`pool` reads only what changes all the time, for the agents a rule can choose (those that
declare what it needs): each one's load, last heartbeat and spend. The fleet's stamps come with
the decision's first statement (``facts.opening``), so a registry change since is seen and the
fleet read again. It uses the registry's helpers (``liveness``, ``spent_now``) and counts load as
the registry's ``loads`` does; ``tests/integration/workitems/test_routing_source.py`` holds it
equal to ``candidates()`` (plus the items routed to an agent and not claimed yet, which routing
counts as load).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from models.agent_tables import AGENTS
from models.agents import Candidate
from models.principal import ALL_TENANTS
from models.work_tables import WORK_ITEMS
from orchestrator import agents
from orchestrator.agents.liveness import Thresholds, liveness_at
from orchestrator.agents.periods import spent_now
from orchestrator.routing import fleet as fleets
from orchestrator.routing import loads
from orchestrator.routing.checks import Needs, state_decides, static_stage
from orchestrator.routing.decisions import MAX_LISTED
from orchestrator.routing.engine import FIRST_READ, Pool, RuledOut, Unread
from orchestrator.storage import driver_sql

# Screens kept per fleet (one per kind of ask: a rule's needs for a kind of item).
_SCREENS_MAX = 1024


def candidates(session: Session, tenant: str, *, now: datetime) -> list[Candidate]:
    """The registered agents that serve ``tenant`` (its own and the operators'), as of ``now``."""
    return agents.candidates(session, tenant, now=now)


def pool(
    session: Session,
    tenant: str,
    *,
    now: datetime,
    capabilities: Collection[str] = (),
    needs: Needs | None = None,
    routing: str | None = None,
    narrow_above: int = MAX_LISTED,
    stamps: fleets.Stamps | None = None,
) -> Pool:
    """The candidates serving ``tenant`` that declare every one of ``capabilities`` (all of them
    for none), and how many serving agents were left out for lacking one.

    With ``needs`` (what a rule asks for an item; its capabilities then stand for
    ``capabilities``), the agents whose specs fail a check whatever their state are ruled out
    (``Pool.ruled_out``, with the check) and their state is not read: a third of a decision's
    rows, in a fleet like the benchmark's. Which ones that is, is worked out once per fleet and
    ``Needs.screen_key``. Of the others, when there are more than ``engine.FIRST_READ``, none is
    read here: the pool gives them as ``unread``, for the engine to read in its strategy's order
    as far as it needs (a thousand agents' state took most of a decision's time).

    An agent's load here is what the registry counts (open items it holds a claim on) plus the
    open items routed to it that it has not taken up yet (unclaimed, never started), but for
    ``routing``, the item being routed: an assignment is not a claim, and without them a burst
    of items would all go to the one agent the strategy likes best, far past its capacity,
    before it claimed any.

    Where no more than ``narrow_above`` agents serve the tenant, every one is a candidate: a
    decision lists that many by name, so each gets its own verdict ("lacks capability x").

    ``stamps``: the tenant's fleet stamps, if the caller read them already (``facts.opening``);
    a fleet kept under others is read again. A decision so sees the registry as of its first
    statement: a change committed while it runs (a few milliseconds) reaches the next decision,
    as one committed just after it would; its agents' load, liveness and spend are read later,
    and an agent deregistered meanwhile is not found then, and left out."""
    if needs is not None:
        capabilities = needs.capabilities.keys()
    if stamps is None:
        stamps = fleets.stamps_of(session, tenant)
    fleet = fleets.cached(session, tenant)
    if fleet is None or fleet.stamps != stamps:
        fleet = fleets.read(session, tenant)
    members, ruled_out, depths = _screened(fleet, capabilities, needs, narrow_above)
    read = _Reader(session, tenant, now, routing)
    # Serving agents that lack a capability asked (one deregistered since the fleet was read, and so
    # not read, serves no more: it is in no count).
    left_out = len(fleet.members) - len(members) - len(ruled_out)
    if needs is None or len(members) <= FIRST_READ:
        return Pool(read(members), left_out=left_out, ruled_out=ruled_out)
    return Pool((), left_out=left_out, ruled_out=ruled_out, unread=members, read=read, depths=depths)


# What a fleet's screen keeps for a kind of ask: the members whose state decides their verdict,
# those ruled out by their specs alone, and how deep decisions over them read (``Pool.depths``).
Screen = tuple[tuple[Unread, ...], tuple[RuledOut, ...], dict[str, int]]


def _screened(fleet: fleets.Fleet, capabilities: Collection[str], needs: Needs | None, narrow_above: int) -> Screen:
    """The members whose state decides their verdict, and those ruled out by their specs alone."""
    if needs is None:
        return tuple(Unread(m.ref, m.tenant, m.spec, None) for m in _chosen(fleet, capabilities, narrow_above)), (), {}
    key = (needs.screen_key, narrow_above)
    screen: Screen | None = fleet.screens.get(key)
    if screen is None:
        read: list[Unread] = []
        out: list[RuledOut] = []
        for member in _chosen(fleet, capabilities, narrow_above):
            stage = static_stage(needs, member.spec)
            if state_decides(member.spec, stage):
                read.append(Unread(member.ref, member.tenant, member.spec, stage))
            else:
                assert stage is not None
                out.append(RuledOut(member.ref, member.tenant, member.spec, stage))
        screen = (tuple(read), tuple(out), {})
        if len(fleet.screens) >= _SCREENS_MAX:
            fleet.screens.clear()
        fleet.screens[key] = screen
    return screen


def _chosen(fleet: fleets.Fleet, capabilities: Collection[str], narrow_above: int) -> list[fleets.Member]:
    members = fleet.having(capabilities)
    if len(members) < len(fleet.members) <= narrow_above:
        return list(fleet.members)
    return members


class _Reader:
    """Reads agents' state as candidates at ``now`` (``engine.ReadState``); each agent once."""

    def __init__(self, session: Session, tenant: str, now: datetime, routing: str | None):
        self.session, self.tenant, self.now, self.routing = session, tenant, now, routing
        self.seen: dict[tuple[str, str], Candidate | None] = {}

    def __call__(self, agents: Sequence[Unread]) -> list[Candidate]:
        wanted = [agent for agent in agents if (agent.tenant, agent.ref) not in self.seen]
        if wanted:
            found = {(c.tenant, c.ref): c for c in _state(self.session, self.tenant, wanted, self.now, self.routing)}
            for agent in wanted:
                self.seen[agent.tenant, agent.ref] = found.get((agent.tenant, agent.ref))
        # A deregistered one (no row) is left out.
        return [c for agent in agents if (c := self.seen[agent.tenant, agent.ref]) is not None]


def _state(
    session: Session, tenant: str, agents: Sequence[Unread], now: datetime, routing: str | None
) -> list[Candidate]:
    """The agents as candidates at ``now`` (a deregistered one is left out)."""
    if not agents:
        return []
    params: dict[str, Any] = {
        "tenants": sorted({tenant, ALL_TENANTS}),
        "ids": sorted({a.ref.partition(":")[2] for a in agents}),
        "now": now,
        "routing": routing or "",
    }
    if driver_sql.supported(session):
        # Past SQLAlchemy: its execution and rows cost more Python than the statement's round trip.
        rows = driver_sql.fetch(session, _STATE_PG, params)
    else:
        rows = session.execute(_STATE, params).all()
    state = {(row[0], row[1]): row for row in rows}
    state_of = liveness_at(now, Thresholds.of())
    # Up to a thousand candidates a decision: one plain loop, nothing worked out twice.
    found: list[Candidate] = []
    for agent in agents:
        row = state.get((agent.tenant, agent.ref.partition(":")[2]))
        if row is None:
            continue  # deregistered since
        _, _, beat, spent, started, load, waiting = row
        spec = agent.spec
        found.append(
            Candidate(
                ref=agent.ref,
                tenant=agent.tenant,
                spec=spec,
                load=load + waiting,
                liveness=state_of(beat),
                spent=spent_now(spec, spent, started, now) if spent else 0.0,
            )
        )
    return found


def _build(postgres: bool) -> Select[Any]:
    """The agents' state: the statement is built once (building it took longer than running it)."""
    agent, claimed, queued = AGENTS.alias("agent"), WORK_ITEMS.alias("claimed"), WORK_ITEMS.alias("queued")
    now = bindparam("now", type_=AGENTS.c.updated_at.type)
    # One definition of load with the hold's (``routing.loads``): claims, and items routed to it.
    load = loads.claimed(agent, claimed, now)
    waiting = loads.waiting(agent, queued, bindparam("routing", type_=WORK_ITEMS.c.id.type))
    # One parameter for the tenants and one for the ids on PostgreSQL (arrays): one statement
    # text, prepared once.
    if postgres:
        tenants = agent.c.tenant == any_(bindparam("tenants", type_=ARRAY(String())))
        ids = agent.c.id == any_(bindparam("ids", type_=ARRAY(String())))
    else:
        tenants = agent.c.tenant.in_(bindparam("tenants", expanding=True))
        ids = agent.c.id.in_(bindparam("ids", expanding=True))
    return select(
        agent.c.tenant,
        agent.c.id,
        agent.c.last_heartbeat_at,
        agent.c.spent,
        agent.c.period_start,
        load.label("load"),
        waiting.label("waiting"),
    ).where(tenants, ids, agent.c.deregistered_at.is_(None))


_STATE = _build(postgres=False)
_STATE_PG = driver_sql.compile_statement(_build(postgres=True))
