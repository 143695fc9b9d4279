"""Round-robin rules' cursors under concurrent routers: two transactions that each route several
items (the timer loop of two orchestrators, say) may need the cursors of two rules in opposite
orders. Waiting for the second while holding the first would be a deadlock PostgreSQL ends by
failing one of them; a router waits only for the first cursor of its transaction and reads any
further one unlocked if another router holds it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from models.agent_api import AgentCreate
from models.agent_tables import Agent
from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, PrincipalType
from models.routing import RoutingRuleCreate
from models.work_api import WorkItemCreate
from models.work_tables import WorkItem
from orchestrator.agents.registry import register
from orchestrator.routing import rules, triggers
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import sessions, task

ROOT = Principal(type=PrincipalType.user, id="root", tenant=ALL_TENANTS, scopes=frozenset({"admin"}))
OPS = Principal(PrincipalType.user, "ops", "acme", frozenset({"work:read", "work:write", "routing:write"}))
postgres_only = pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])


def setup(client: TestClient) -> dict[str, str]:
    """Two round-robin rules (labels one and two), each over agents of its own (so that the
    routers never wait for the same agent's hold), each rule's cursor made (its first decision),
    and four items not routed yet."""
    factory = sessions(client)
    with factory.begin() as session:
        for label in ("one", "two"):
            for n in (1, 2, 3):
                body = {
                    "id": f"{label}-{n}",
                    "tenant": "acme",
                    "agent_type": "actuator",
                    "capabilities": [{"name": label}],
                    "capacity": 100,
                }
                register(session, ROOT, AgentCreate.model_validate(body))
            selectors = [{"kind": "capability", "value": label}]
            body = {
                "id": f"rr-{label}",
                "match": {"labels": [label]},
                "selectors": selectors,
                "strategy": "round_robin",
            }
            rules.register(session, OPS, RoutingRuleCreate.model_validate(body))
        session.execute(update(Agent).values(last_heartbeat_at=utcnow()))
    items: dict[str, str] = {}
    for name, label in [("one", "one"), ("two", "two"), ("A", "one"), ("B", "two"), ("C", "two"), ("D", "one")]:
        item = WorkItemCreate.model_validate(task(title=name, labels=[label]))
        items[name] = create_item(factory, OPS, item, max_payload_bytes=1 << 20)[0].id
    with factory.begin() as session:
        # A..D as if created before any rule: not routed yet.
        session.execute(
            update(WorkItem)
            .where(WorkItem.id.in_([items[n] for n in "ABCD"]))
            .values(assignee_type=None, assignee_id=None)
        )
    return items


@postgres_only
def test_two_routers_needing_two_cursors_in_opposite_orders_both_finish(client: TestClient) -> None:
    items = setup(client)
    factory = sessions(client)
    both_hold_one = threading.Barrier(2, timeout=30)

    def route(first: str, second: str) -> list[str | None]:
        chosen: list[str | None] = []
        with factory.begin() as session:
            for n, name in enumerate((first, second)):
                item = session.scalar(select(WorkItem).where(WorkItem.id == items[name]).with_for_update())
                assert item is not None
                applied = triggers.decide(session, item, "manual", "user:ops")
                chosen.append(applied.chosen if applied else None)
                if n == 0:
                    both_hold_one.wait()  # each holds one rule's cursor and goes for the other's
        return chosen

    with ThreadPoolExecutor(2) as pool:
        one_then_two = pool.submit(route, "A", "B")
        two_then_one = pool.submit(route, "C", "D")
        results = [one_then_two.result(timeout=60), two_then_one.result(timeout=60)]
    assert all(agent is not None for chosen in results for agent in chosen), results
