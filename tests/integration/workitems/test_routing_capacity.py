"""An agent's capacity holds when several transactions route items at once.

Each decision reads its candidates' loads without a lock. In the PostgreSQL tests (READ
COMMITTED) every router reads them before any of them has committed (a barrier after each one's
first pool read), so all of them see the cheap agent with room and all choose it: the cheap agent
must still end up with no more open items routed to it or claimed by it than its capacity, and the
others must go to the agent that has room. On SQLite the routers' transactions run one after
another (``BEGIN IMMEDIATE``), so that race needs PostgreSQL; the recount after a stale read, and
its limit, are checked on both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, or_, select, update

from models.agent_api import AgentCreate
from models.agent_tables import Agent
from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, PrincipalType
from models.routing import RerouteRequest, RoutingDecisionRead, RoutingRuleCreate
from models.work_api import WorkItemCreate
from models.work_tables import WorkItem
from orchestrator.agents.registry import register
from orchestrator.routing import decisions, hold, rules, source, triggers
from orchestrator.routing.engine import Pool
from orchestrator.work import claims
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import sessions, task

ROOT = Principal(type=PrincipalType.user, id="root", tenant=ALL_TENANTS, scopes=frozenset({"admin"}))
OPS = Principal(
    PrincipalType.user, "ops", "acme", frozenset({"work:read", "work:write", "routing:write", "agents:write"})
)
CREATOR = Principal(PrincipalType.user, "ops", "acme", frozenset({"work:read", "work:write"}))
ROUTERS = 5
CHEAP_CAPACITY = 2
# The race needs two transactions reading at once: PostgreSQL.
postgres_only = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])


def add_agent(client: TestClient, agent_id: str, *, capacity: int, cost: float) -> None:
    body = {
        "id": agent_id,
        "tenant": "acme",
        "agent_type": "stateless_tool_caller",
        "capabilities": [{"name": "sql", "proficiency": "expert"}],
        "capacity": capacity,
        "cost_per_item": cost,
    }
    with sessions(client).begin() as session:
        register(session, ROOT, AgentCreate.model_validate(body))
        session.execute(update(Agent).where(Agent.id == agent_id).values(last_heartbeat_at=utcnow()))


def add_rule(client: TestClient) -> None:
    body = {
        "id": "db",
        "match": {"labels": ["db"]},
        "selectors": [{"kind": "capability", "value": "sql"}],
        "strategy": "cost_minimizing",
    }
    with sessions(client).begin() as session:
        rules.register(session, OPS, RoutingRuleCreate.model_validate(body))


def all_read_first(monkeypatch: pytest.MonkeyPatch, parties: int) -> threading.Barrier:
    """Every router's first pool read waits until all ``parties`` have read theirs: each decides on
    loads read before any other router's assignment could have committed (a read after that, a
    decision made again, goes on at once)."""
    barrier = threading.Barrier(parties, timeout=30)
    real = source.pool
    done = threading.local()

    def pool(*args: Any, **kwargs: Any) -> Pool:
        found = real(*args, **kwargs)
        if not getattr(done, "read", False):
            done.read = True
            barrier.wait()
        return found

    monkeypatch.setattr(source, "pool", pool)
    return barrier


def at_once(work: Callable[[int], None]) -> None:
    with ThreadPoolExecutor(ROUTERS) as pool:
        for future in [pool.submit(work, n) for n in range(ROUTERS)]:
            future.result(timeout=60)


def held_by(client: TestClient) -> dict[str | None, int]:
    """Open items per agent that holds a claim on them or has them routed to it (None: nobody)."""
    holder = func.coalesce(WorkItem.claimed_by_id, WorkItem.assignee_id)
    with sessions(client)() as session:
        rows = session.execute(
            select(holder, func.count())
            .where(WorkItem.is_open.is_(True), or_(holder.is_(None), WorkItem.assignee_type == "agent"))
            .group_by(holder)
        ).all()
    return {row[0]: row[1] for row in rows}


def routing_decisions(client: TestClient) -> list[RoutingDecisionRead]:
    with sessions(client)() as session:
        ids = session.scalars(select(WorkItem.id).order_by(WorkItem.id)).all()
        return [d for i in ids for d in decisions.for_item(session, i)]


def new_item(client: TestClient, **extra: Any) -> str:
    body = WorkItemCreate.model_validate(task(labels=["db"], **extra))
    return create_item(sessions(client), CREATOR, body, max_payload_bytes=1 << 20)[0].id


def as_agent(ident: str) -> Principal:
    return Principal(PrincipalType.agent, ident, "acme", frozenset({"work:read", "work:claim"}))


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    """cheap (capacity 2, cost 1, one item claimed already) is every router's choice; dear
    (capacity 10, cost 5) has room."""
    add_agent(client, "cheap", capacity=CHEAP_CAPACITY, cost=1)
    add_agent(client, "dear", capacity=10, cost=5)
    claimed = new_item(client, title="cheap's own", assignee={"type": "agent", "id": "cheap"})
    with sessions(client).begin() as session:
        claims.claim(session, as_agent("cheap"), claimed, ttl_s=600, default_ttl_s=600)
    return client


def check_capacity_held(client: TestClient) -> None:
    held = held_by(client)
    assert held.get("cheap", 0) <= CHEAP_CAPACITY, f"cheap was routed more than its capacity: {held}"
    # Every item went somewhere valid: cheap to its capacity (its claim and one routed), dear the rest.
    made = routing_decisions(client)
    # On a failure, the decisions' reasons say which router chose what, and why.
    assert held == {"cheap": CHEAP_CAPACITY, "dear": ROUTERS + 1 - CHEAP_CAPACITY}, (held, [d.reason for d in made])
    assert len(made) == ROUTERS
    again = [d for d in made if d.chosenAssignee == "agent:dear"]
    # Those that chose again say why, in the reason and in cheap's verdict: it filled up meanwhile.
    for decision in again:
        assert "agent:cheap filled up while this decision was made" in decision.reason, decision.reason
        assert verdict(decision, "agent:cheap") == (
            "rejected",
            "capacity",
            f"filled up while this decision was made: holds {CHEAP_CAPACITY} of {CHEAP_CAPACITY}",
        )


def verdict(decision: RoutingDecisionRead, ref: str) -> tuple[str, str | None, str]:
    [found] = [c for c in decision.candidates if c.ref == ref]
    return found.verdict, found.check, found.why


@postgres_only
def test_items_created_at_once_do_not_overfill_the_agent_they_all_prefer(
    fleet: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_rule(fleet)
    all_read_first(monkeypatch, ROUTERS)

    def create(n: int) -> None:
        new_item(fleet, title=f"query {n}")

    at_once(create)
    check_capacity_held(fleet)


@postgres_only
def test_items_rerouted_at_once_do_not_overfill_the_agent_they_all_prefer(
    fleet: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = sessions(fleet)
    # Created before any rule: nobody has them yet.
    items = [new_item(fleet, title=f"query {n}") for n in range(ROUTERS)]
    add_rule(fleet)
    all_read_first(monkeypatch, ROUTERS)

    def reroute(n: int) -> None:
        with factory.begin() as session:
            triggers.reroute(session, OPS, items[n], RerouteRequest(reason="all at once"))

    at_once(reroute)
    check_capacity_held(fleet)


def stale_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool read reports every agent idle, as a read made before other routers committed would."""
    real = source.pool

    def pool(*args: Any, **kwargs: Any) -> Pool:
        found = real(*args, **kwargs)
        return replace(found, agents=[replace(c, load=0) for c in found.agents])

    monkeypatch.setattr(source, "pool", pool)


def test_an_agent_that_filled_up_since_the_read_is_counted_full_and_the_engine_decides_again(
    fleet: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_item(fleet, title="cheap's second", assignee={"type": "agent", "id": "cheap"})
    add_rule(fleet)
    stale_loads(monkeypatch)
    item = new_item(fleet, title="routed")
    [decision] = routing_decisions_of(fleet, item)
    assert decision.chosenAssignee == "agent:dear"
    assert decision.reason.endswith(
        f"; decided again: agent:cheap filled up while this decision was made: holds 2 of {CHEAP_CAPACITY}"
    ), decision.reason
    assert verdict(decision, "agent:cheap") == (
        "rejected",
        "capacity",
        f"filled up while this decision was made: holds 2 of {CHEAP_CAPACITY}",
    )
    assert held_by(fleet) == {"cheap": 2, "dear": 1}


def test_after_as_many_filled_agents_as_a_decision_tries_it_chooses_nobody(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"full-{n}" for n in range(hold.MAX_HOLDS + 1)]
    for n, name in enumerate(names):
        add_agent(client, name, capacity=1, cost=n + 1)
        new_item(client, title=f"{name}'s", assignee={"type": "agent", "id": name})
    add_rule(client)
    stale_loads(monkeypatch)
    item = new_item(client, title="routed")
    [decision] = routing_decisions_of(client, item)
    tried, untried = names[: hold.MAX_HOLDS], names[hold.MAX_HOLDS]
    assert decision.chosenAssignee is None
    assert decision.reason == (
        f"no agent chosen by rule db v1: {', '.join(f'agent:{n}' for n in tried)} filled up one after another "
        f"while this decision was made (at most {hold.MAX_HOLDS} are tried)"
    ), decision.reason
    for name in tried:
        assert verdict(decision, f"agent:{name}") == (
            "rejected",
            "capacity",
            "filled up while this decision was made: holds 1 of 1",
        )
    assert verdict(decision, f"agent:{untried}")[0] == "eligible"
    assert held_by(client)[None] == 1  # the item stays where it was: nobody's


@postgres_only
def test_a_second_hold_in_one_transaction_is_not_waited_for(fleet: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction holding one agent never waits for another (two such could wait for each
    other): one held elsewhere counts as full for the decision."""
    factory = sessions(fleet)
    first, second = new_item(fleet, title="first"), new_item(fleet, title="second")
    add_rule(fleet)
    # Another transaction is giving cheap an item right now: it holds cheap.
    other = factory()
    other.begin()
    try:
        elsewhere = new_item(fleet, title="elsewhere", assignee={"type": "agent", "id": "dear"})
        held = other.get(WorkItem, elsewhere, with_for_update=True)
        assert held is not None
        triggers.decide(other, held, "manual", "user:ops")
        assert held.assignee_id == "cheap"

        def route_two() -> None:
            with factory.begin() as session:
                for item_id, exclude in ((first, frozenset({"agent:cheap"})), (second, frozenset())):
                    item = session.get(WorkItem, item_id, with_for_update=True)
                    assert item is not None
                    triggers.decide(session, item, "manual", "user:ops", exclude=exclude)

        router = threading.Thread(target=route_two)
        router.start()
        router.join(timeout=20)
        waited = router.is_alive()
    finally:
        other.rollback()
        other.close()
    router.join(timeout=20)
    assert not waited, "the second hold waited for the other transaction"
    [decision] = routing_decisions_of(fleet, second)
    assert decision.chosenAssignee == "agent:dear"
    note = "another decision was giving it an item at the same moment (not waited for: counted full)"
    assert decision.reason.endswith(f"; decided again: agent:cheap {note}"), decision.reason
    assert verdict(decision, "agent:cheap") == ("rejected", "capacity", note)


@postgres_only
def test_a_second_hold_let_go_a_moment_later_is_taken(fleet: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The router that holds the agent commits (here: ends) between two tries: the hold is taken
    and the agent chosen, not counted full. (A router that commits lets its holds go one at a
    time; on a busy host it may be descheduled in between.)"""
    factory = sessions(fleet)
    first, second = new_item(fleet, title="first"), new_item(fleet, title="second")
    add_rule(fleet)
    other = factory()
    other.begin()
    elsewhere = new_item(fleet, title="elsewhere", assignee={"type": "agent", "id": "dear"})
    held = other.get(WorkItem, elsewhere, with_for_update=True)
    assert held is not None
    triggers.decide(other, held, "manual", "user:ops")  # holds cheap, giving it its last place
    pauses: list[float] = []

    def other_ends(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            other.rollback()  # its holds go; cheap has room again
            other.close()

    monkeypatch.setattr(hold, "_pause", other_ends)
    try:
        with factory.begin() as session:
            for item_id, exclude in ((first, frozenset({"agent:cheap"})), (second, frozenset())):
                item = session.get(WorkItem, item_id, with_for_update=True)
                assert item is not None
                triggers.decide(session, item, "manual", "user:ops", exclude=exclude)
    finally:
        if not pauses:
            other.rollback()
            other.close()
    assert len(pauses) == 1
    [decision] = routing_decisions_of(fleet, second)
    assert decision.chosenAssignee == "agent:cheap", decision.reason


def routing_decisions_of(client: TestClient, item_id: str) -> list[RoutingDecisionRead]:
    with sessions(client)() as session:
        return decisions.for_item(session, item_id)
