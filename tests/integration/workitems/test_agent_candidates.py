"""What the router reads from the registry (``candidates``), and Celery workers' presence folded
into it, on a real database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from models.agent_api import AgentCreate
from models.agent_tables import AGENT_CAPABILITIES, Agent
from models.agents import AgentSpec, Candidate
from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, PrincipalType
from models.work_api import WorkItemCreate
from models.worker_presence import WorkerPresence
from orchestrator.agents import candidates, record_spend
from orchestrator.agents.liveness import Thresholds, liveness
from orchestrator.agents.registry import deregister, register
from orchestrator.agents.workers import fold_workers, forget_gone_workers
from orchestrator.work import claims
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import TokenFactory, sessions, task

THRESHOLDS = Thresholds(stale_after_s=90, dead_after_s=600)
ROOT = Principal(type=PrincipalType.user, id="root", tenant=ALL_TENANTS, scopes=frozenset({"admin"}))


def agent(ident: str, tenant: str = "acme") -> Principal:
    return Principal(
        type=PrincipalType.agent, id=ident, tenant=tenant, scopes=frozenset({"work:read", "work:write", "work:claim"})
    )


def add(client: TestClient, agent_id: str, tenant: str, **spec: Any) -> None:
    body = AgentCreate.model_validate({"id": agent_id, "tenant": tenant, "agent_type": "actuator", **spec})
    with sessions(client).begin() as session:
        register(session, ROOT, body)


@contextmanager
def counting(client: TestClient) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = client.app.state.wiring.engine  # type: ignore[attr-defined]

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):  # not SQLite's BEGIN IMMEDIATE
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_candidates_are_the_tenants_own_and_the_operators_agents_with_load_liveness_and_spend(
    client: TestClient,
) -> None:
    add(client, "acme-1", "acme", capacity=2, budget={"unit": "USD", "limit": 10, "period": "day"})
    add(client, "acme-2", "acme")
    add(client, "shared", ALL_TENANTS, capacity=5)
    add(client, "globex-1", "globex")
    add(client, "gone", "acme")
    factory = sessions(client)
    with factory.begin() as session:
        deregister(session, ROOT, "gone")
    # Claims: acme-1 holds one acme item; shared holds one in acme and one in globex (it serves both).
    body = WorkItemCreate.model_validate(task(offer={"type": "agent"}))
    for holder, tenant in [("acme-1", "acme"), ("shared", "acme"), ("shared", "globex")]:
        item = create_item(factory, agent("seeder", tenant), body, max_payload_bytes=1 << 20)[0]
        with factory.begin() as session:
            claims.claim(session, agent(holder, tenant), item.id, ttl_s=None, default_ttl_s=60)
    now = utcnow()
    with factory.begin() as session:
        for agent_id, ago_s in [("acme-1", 30), ("shared", 300)]:
            beat = now - timedelta(seconds=ago_s)
            session.execute(update(Agent).where(Agent.id == agent_id).values(last_heartbeat_at=beat))
        assert record_spend(session, "acme", "acme-1", 4.0, now=now)
        assert not record_spend(session, "acme", "globex-1", 1.0, now=now)  # not acme's: nothing recorded

    with factory() as session, counting(client) as statements:
        found = candidates(session, "acme", now=now, thresholds=THRESHOLDS)
    assert len(statements) == 2, statements  # the router calls it on every decision
    by_ref = {c.ref: c for c in found}
    assert list(by_ref) == ["agent:shared", "agent:acme-1", "agent:acme-2"]  # tenant "*" sorts first
    assert (by_ref["agent:acme-1"].load, by_ref["agent:acme-1"].free, by_ref["agent:acme-1"].liveness) == (1, 1, "live")
    assert (by_ref["agent:shared"].load, by_ref["agent:shared"].tenant, by_ref["agent:shared"].liveness) == (
        2,
        ALL_TENANTS,
        "stale",
    )
    assert by_ref["agent:acme-2"].liveness == "dead" and by_ref["agent:acme-2"].load == 0
    assert by_ref["agent:acme-1"].spent == 4.0 and by_ref["agent:acme-1"].spec.budget is not None

    # Later the same day the spend still counts; the next day it is a new period.
    with factory() as session:
        later = candidates(session, "acme", now=now + timedelta(minutes=1), thresholds=THRESHOLDS)
        tomorrow = candidates(session, "acme", now=now + timedelta(days=1), thresholds=THRESHOLDS)
    assert next(c.spent for c in later if c.ref == "agent:acme-1") == 4.0
    assert next(c.spent for c in tomorrow if c.ref == "agent:acme-1") == 0.0
    assert {c.liveness for c in tomorrow} == {"dead"}
    with factory() as session:
        assert [c.ref for c in candidates(session, "globex", now=now, thresholds=THRESHOLDS)] == [
            "agent:shared",
            "agent:globex-1",
        ]


def test_a_spend_in_a_new_period_replaces_the_last_periods(client: TestClient) -> None:
    add(client, "bot", "acme", budget={"unit": "tokens", "limit": 1000, "period": "hour"})
    factory = sessions(client)
    nine = datetime(2030, 1, 1, 9, 30, tzinfo=UTC)
    with factory.begin() as session:
        record_spend(session, "acme", "bot", 100, now=nine)
        record_spend(session, "acme", "bot", 50, now=nine + timedelta(minutes=20))
        record_spend(session, "acme", "bot", 7, now=nine + timedelta(minutes=40))  # 10:10: the next hour
    with factory() as session:
        row = session.get(Agent, ("acme", "bot"))
        assert row is not None
        assert (row.spent, row.period_start) == (7, datetime(2030, 1, 1, 10, tzinfo=UTC))
        (spent,) = [c.spent for c in candidates(session, "acme", now=nine + timedelta(minutes=45))]
    assert spent == 7


def presence(name: str, *capabilities: str, concurrency: int = 2, started: datetime | None = None) -> WorkerPresence:
    now = utcnow()
    return WorkerPresence(
        name=name, capabilities=list(capabilities), concurrency=concurrency, started_at=started or now, beat_at=now
    )


def test_workers_present_become_live_agents_of_every_tenant_that_follow_what_they_announce(
    client: TestClient,
) -> None:
    factory = sessions(client)
    with factory.begin() as session:
        fold_workers(session, [presence("alpha-0@host", "alpha", "beta", concurrency=4)])
    with factory() as session:
        found = worker_agent(session, "alpha-0@host")
        # In the registry, live, but never a routing candidate: a worker never claims a work item.
        assert candidates(session, "acme", thresholds=THRESHOLDS) == []
        declared = AGENT_CAPABILITIES.c
        caps = set(session.scalars(select(declared.name).where(declared.agent_id == "alpha-0@host")))
    assert (found.ref, found.tenant, found.liveness, found.spec.capacity) == ("agent:alpha-0@host", "*", "live", 4)
    assert found.spec.agent_type.value == "stateless_tool_caller" and caps == {"alpha", "beta"}

    # An operator refines it; a restart with fewer capabilities keeps what the operator set.
    with factory.begin() as session:
        row = session.get(Agent, (ALL_TENANTS, "alpha-0@host"))
        assert row is not None and row.last_heartbeat_source == "celery"
        row.spec = {**row.spec, "autonomy": "L3"}
        row.last_heartbeat_at = utcnow() - timedelta(minutes=5)
    with factory.begin() as session:
        fold_workers(session, [presence("alpha-0@host", "alpha", concurrency=8)])
    with factory() as session:
        found = worker_agent(session, "alpha-0@host")
    assert [c.name for c in found.spec.capabilities] == ["alpha"] and found.spec.capacity == 8
    assert found.spec.autonomy == "L3" and found.liveness == "live"

    # Deregistered by an operator: the same process beating does not bring it back; a restart does.
    with factory.begin() as session:
        deregister(session, ROOT, "alpha-0@host")
    started_before = utcnow() - timedelta(minutes=1)
    with factory.begin() as session:
        fold_workers(session, [presence("alpha-0@host", "alpha", started=started_before)])
    with factory() as session:
        assert worker_row(session, "alpha-0@host").deregistered_at is not None
    with factory.begin() as session:
        fold_workers(session, [presence("alpha-0@host", "alpha", started=utcnow())])
    with factory() as session:
        assert worker_row(session, "alpha-0@host").deregistered_at is None


def worker_row(session: Any, name: str) -> Agent:
    row: Agent | None = session.get(Agent, (ALL_TENANTS, name))
    assert row is not None
    return row


def worker_agent(session: Any, name: str) -> Candidate:
    """A folded worker as the registry holds it (it is no routing candidate)."""
    row = worker_row(session, name)
    state = liveness(row.last_heartbeat_at, utcnow(), THRESHOLDS)
    return Candidate(
        ref=f"agent:{row.id}", tenant=row.tenant, spec=AgentSpec.model_validate(row.spec), load=0, liveness=state
    )


def test_a_worker_named_like_a_tenants_agent_is_left_out(client: TestClient) -> None:
    add(client, "bot", "acme")
    factory = sessions(client)
    with factory.begin() as session:
        fold_workers(session, [presence("bot", "alpha"), presence("worker-1", "alpha")])
    with factory() as session:
        rows = session.execute(select(Agent.tenant, Agent.id).order_by(Agent.tenant, Agent.id)).all()
    assert [tuple(r) for r in rows] == [("*", "worker-1"), ("acme", "bot")]


def test_workers_gone_for_a_day_are_forgotten_and_come_back_when_they_start_again(
    client: TestClient, token: TokenFactory
) -> None:
    add(client, "ops-bot", ALL_TENANTS)  # an operator's agent, never heard from: not a worker, kept
    factory = sessions(client)
    with factory.begin() as session:
        fold_workers(session, [presence("old-0@pod-a", "alpha"), presence("new-0@pod-b", "alpha")])
        old = worker_row(session, "old-0@pod-a")
        old.last_heartbeat_at = utcnow() - timedelta(days=1, seconds=1)
        worker_row(session, "new-0@pod-b").last_heartbeat_at = utcnow() - timedelta(hours=23)
    with factory.begin() as session:
        assert forget_gone_workers(session, after_s=86_400) == ["old-0@pod-a"]
    with factory() as session:
        assert worker_row(session, "old-0@pod-a").deregistered_by == "system:celery"
        assert worker_row(session, "new-0@pod-b").deregistered_at is None
        assert session.get(Agent, (ALL_TENANTS, "ops-bot")).deregistered_at is None
    ops = token("user:ops", scopes=["agents:read"], tenant=ALL_TENANTS)
    listed = client.get("/api/v1/agents", headers=ops)
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()["agents"]] == ["new-0@pod-b", "ops-bot"]
    # Heard from again (the same process, cut off from Redis for a day, say): registered again.
    with factory.begin() as session:
        fold_workers(session, [presence("old-0@pod-a", "alpha", started=utcnow() - timedelta(days=3))])
    with factory() as session:
        row = worker_row(session, "old-0@pod-a")
        assert (row.deregistered_at, row.deregistered_by) == (None, None)
