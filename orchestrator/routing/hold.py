"""Holding an agent for the item routing chose it for, so that concurrent decisions cannot give it
more than its capacity.

The engine chooses from loads read without a lock (``source.pool``). On PostgreSQL (READ
COMMITTED) two transactions routing two items at once can both read an agent with one place left
and both give it an item. So once the engine has chosen an agent, the decision takes that agent's
*hold* and counts its load again (``loads``, the pool's own definition, less the item being
routed); if the agent filled up meanwhile, the engine decides again with it counted full, at most
``MAX_HOLDS`` agents in all, and then nobody is chosen. A router keeps the hold of the agent it
gave the item to until its transaction ends, so the next router's count sees that item. Both
statements run only when an agent was chosen; they cannot be one: a statement reads as of when it
began, before it waited for the hold, and would miss what the last holder committed meanwhile.
They are sent together, though (one round trip, ``storage.pipeline.select_in_turn``): the server
runs the recount only once the hold is taken, and it reads as of then.

The hold is a transaction-scoped advisory lock keyed by the agent (and the schema), not the
agent's row (``SELECT ... FOR UPDATE``): a row lock strong enough to keep two routers apart also
conflicts with every UPDATE of the row, and the routing transaction of a holder's failure goes on
to update the failing agent's row for its spend (``triggers.on_failure``): two agents failing
items over to each other at once would each hold the other's row and wait for its own, a
deadlock. Only routing takes holds: completions and failures recording spend, ``mark_live`` (a
short transaction of its own, before the call's), an agent's heartbeat and registry changes never
wait for a hold, nor a hold for them.

Lock order: a router holds the row locks of the items it routes (its trigger took them: the API
call, the timer loop's ``lock_items`` in id order; or it created them) and then waits for at most
one hold per transaction; any further hold in the same transaction (another item it routes, or the
next agent after the first filled up) is only tried (a few times over about 40 ms: a router that
commits lets its holds go one at a time, and on a busy host it may be descheduled between two), and
one still held elsewhere counts as full for that decision. So holds cannot wait on each other in a
cycle: a transaction waiting for a hold holds none. What a holder does after its hold (record the
decision, advance a round-robin cursor, a failure's spend) waits for nobody that waits for a hold;
a transaction that went on to lock an item another router holds while waiting for its hold would
close a cycle, as the round-robin cursor's lock could already, and PostgreSQL would end one of
them. On SQLite the transaction holds the database's write lock from its start (``BEGIN
IMMEDIATE``): no other router runs meanwhile, so nothing is locked; the load is still counted
again, so both databases decide alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from models.agent_tables import AGENTS
from models.agents import Candidate
from models.work_tables import WORK_ITEMS, WorkItem
from orchestrator.routing import loads
from orchestrator.routing.assign import ref_of
from orchestrator.routing.checks import Needs
from orchestrator.routing.engine import CandidateOutcome, Decision, Pool, PoolOf
from orchestrator.storage.pipeline import select_in_turn
from orchestrator.storage.unit_of_work import uow_of

# Agents a decision may find filled up, one after another, before it chooses nobody.
MAX_HOLDS = 4
# A hold only tried (this transaction has one already) is tried this many times, the pauses
# growing from this long (about 40 ms in all), before the agent counts as full for the decision.
TRIES = 5
TRY_PAUSE_S = 0.004
_pause = time.sleep
# The engine's decision with the pools it is given (``engine.route`` over the item's rules).
Route = Callable[[PoolOf], Decision | None]

# The hold's key: the agent within this schema (tests and deployments may share a database),
# hashed to a 64-bit key. Two agents whose keys collide only take turns.
_KEY = (
    "hashtextextended(concat_ws(' ', 'workyard routing', current_schema(), "
    "CAST(:tenant AS text), CAST(:agent AS text)), 0)"
)
_WAIT = text(f"SELECT pg_advisory_xact_lock({_KEY})")
_TRY = text(f"SELECT pg_try_advisory_xact_lock({_KEY})")

_AGENT = AGENTS.alias("chosen")
_ROUTING = bindparam("routing", type_=WORK_ITEMS.c.id.type)
_RECOUNT = select(
    loads.claimed(
        _AGENT,
        WORK_ITEMS.alias("claimed"),
        bindparam("now", type_=AGENTS.c.updated_at.type),
        excluding=_ROUTING,
    )
    + loads.waiting(_AGENT, WORK_ITEMS.alias("queued"), _ROUTING)
).where(_AGENT.c.tenant == bindparam("tenant"), _AGENT.c.id == bindparam("agent"))


@dataclass(frozen=True)
class Filled:
    """A chosen agent that had no room left when held: its load counted under the hold (None: another
    transaction held it, and this one, holding another already, did not wait)."""

    load: int | None
    capacity: int

    def why(self) -> str:
        if self.load is None:
            return "another decision was giving it an item at the same moment (not waited for: counted full)"
        return f"filled up while this decision was made: holds {self.load} of {self.capacity}"


def decide(session: Session, item: WorkItem, route: Route, pool_of: PoolOf, *, now: datetime) -> Decision | None:
    """The engine's decision for ``item`` (``route`` over ``pool_of``), its chosen agent held until the
    transaction ends with room for the item; an agent found full is counted full and the engine
    decides again. The reason and verdicts say which agents filled up meanwhile."""
    filled: dict[str, Filled] = {}
    holder = ref_of(item.claimed_by_type, item.claimed_by_id)

    def current(needs: Needs) -> Pool:
        return _counted_full(pool_of(needs), filled, holder)

    decision = route(current)
    held = 0
    while decision is not None and decision.chosen is not None:
        chosen = decision.chosen
        load = _held_load(session, chosen, item.id, now)
        if load is not None and load < chosen.spec.capacity:
            return _told(decision, filled)
        filled[chosen.ref] = Filled(load, chosen.spec.capacity)
        held += 1
        if held >= MAX_HOLDS:
            return _nobody(decision, filled)
        decision = route(current)
    return None if decision is None else _told(decision, filled)


def _held_load(session: Session, chosen: Candidate, item_id: str, now: datetime) -> int | None:
    """The chosen agent's load under its hold, but for the item being routed; None: another
    transaction holds it and this one did not wait (it holds another already)."""
    agent_id = chosen.ref.partition(":")[2]
    key = {"tenant": chosen.tenant, "agent": agent_id}
    recount = (_RECOUNT, {**key, "routing": item_id, "now": now})
    if session.get_bind().dialect.name != "postgresql":
        return int(session.execute(recount[0], recount[1]).scalar_one())
    holds = uow_of(session).agent_holds
    # Holding one already: waiting here could close a cycle with a router doing the same.
    lock = _TRY if holds else _WAIT
    # The recount is a statement of its own, after the hold's: it reads what the last holder
    # committed. Both go in one round trip; the server runs the recount once the hold is taken.
    session.flush()  # sent past the session: it must see this transaction's own changes
    [held], [[load]] = select_in_turn(session, [(lock, key), recount])
    tries = 1
    while lock is _TRY and not held[0] and tries < TRIES:
        # A router that finished lets its holds go one at a time as it commits: the one it still
        # has may be free a moment later. Tried again, never waited for (no cycle can form).
        _pause(TRY_PAUSE_S * tries)
        [held], [[load]] = select_in_turn(session, [(lock, key), recount])
        tries += 1
    if lock is _TRY and not held[0]:
        return None
    holds.add((chosen.tenant, agent_id))
    return int(load)


def _counted_full(pool: Pool, filled: Mapping[str, Filled], holder: str | None) -> Pool:
    """The pool with each agent found full counted at least at its capacity, so the engine rejects it
    for capacity, as it would had it read the load the hold counted (the agents it reads later too)."""
    if not filled:
        return pool

    def counted(candidates: Sequence[Candidate]) -> list[Candidate]:
        agents: list[Candidate] = []
        for candidate in candidates:
            found = filled.get(candidate.ref)
            if found is not None:
                load = found.capacity if found.load is None else found.load
                # The engine takes one off the holder's load (its claim on this very item); the hold's
                # count left that item out already.
                load += 1 if candidate.ref == holder else 0
                candidate = replace(candidate, load=max(candidate.load, load))
            agents.append(candidate)
        return agents

    read = pool.read
    return replace(
        pool,
        agents=counted(pool.agents),
        read=None if read is None else lambda unread: counted(read(unread)),
    )


def _told(decision: Decision, filled: Mapping[str, Filled]) -> Decision:
    """The decision, its reason and verdicts saying which agents filled up while it was made."""
    if not filled:
        return decision
    notes = "; ".join(f"{ref} {found.why()}" for ref, found in filled.items())
    return replace(
        decision,
        reason=f"{decision.reason}; decided again: {notes}",
        outcomes=tuple(_reworded(o, filled) for o in decision.outcomes),
    )


def _reworded(outcome: CandidateOutcome, filled: Mapping[str, Filled]) -> CandidateOutcome:
    found = filled.get(outcome.ref)
    if found is None or outcome.check != "capacity":
        return outcome
    return outcome._replace(why=found.why())


def _nobody(decision: Decision, filled: Mapping[str, Filled]) -> Decision:
    """No agent for the item: the last of ``MAX_HOLDS`` agents chosen one after another filled up too."""
    assert decision.chosen is not None
    last = decision.chosen.ref
    tried = ", ".join(filled)
    outcomes = [o for o in decision.outcomes if o.ref != last]
    rejected = CandidateOutcome(last, "rejected", "capacity", filled[last].why())
    untried = "fits; not tried: the agents chosen before it filled up while this decision was made"
    eligible = [o._replace(why=untried) for o in outcomes if o.verdict == "eligible"]
    rest = [_reworded(o, filled) for o in outcomes if o.verdict != "eligible"]
    return replace(
        decision,
        chosen=None,
        reason=f"no agent chosen by {decision.rule.label}: {tried} filled up one after another while this "
        f"decision was made (at most {MAX_HOLDS} are tried)",
        outcomes=(*eligible, rejected, *rest),
    )
