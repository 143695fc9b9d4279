"""The seam through which routing reads the registry: for any capabilities, its pool is the
registry's ``candidates()`` narrowed to the agents declaring them (same load, liveness, spend and
spec, same order), with the others counted, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from models.agent_api import AgentCreate, AgentUpdate
from models.agent_tables import Agent
from models.base import utcnow
from models.principal import ALL_TENANTS, Principal, PrincipalType
from models.work_api import WorkItemCreate
from models.work_tables import WorkItem
from orchestrator.agents import candidates, record_spend
from orchestrator.agents.registry import deregister, register
from orchestrator.agents.registry import update as update_agent
from orchestrator.routing import source
from orchestrator.routing.checks import CHECKS, needs_of
from orchestrator.work import claims
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import sessions, task
from tests.unit.routing.fleet import item, rule

ROOT = Principal(type=PrincipalType.user, id="root", tenant=ALL_TENANTS, scopes=frozenset({"admin"}))


def as_agent(ident: str, tenant: str) -> Principal:
    return Principal(PrincipalType.agent, ident, tenant, frozenset({"work:read", "work:write", "work:claim"}))


def add(client: TestClient, agent_id: str, tenant: str, caps: dict[str, str], **spec: Any) -> None:
    capabilities = [{"name": n, "proficiency": p} for n, p in caps.items()]
    body = {"id": agent_id, "tenant": tenant, "agent_type": "actuator", "capabilities": capabilities, **spec}
    with sessions(client).begin() as session:
        register(session, ROOT, AgentCreate.model_validate(body))


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    add(client, "a-sql", "acme", {"sql": "expert"}, capacity=3, budget={"unit": "USD", "limit": 10, "period": "day"})
    add(client, "a-both", "acme", {"sql": "novice", "python": "advanced"})
    add(client, "a-py", "acme", {"python": "expert"})
    add(client, "shared", ALL_TENANTS, {"sql": "advanced"}, capacity=5)
    add(client, "g-sql", "globex", {"sql": "expert"})
    add(client, "gone", "acme", {"sql": "expert"})
    # One id in two tenants: each counts only the claims in its own tenant.
    add(client, "twin", "acme", {"sql": "novice"})
    add(client, "twin", "globex", {"sql": "novice"})
    factory = sessions(client)
    with factory.begin() as session:
        deregister(session, ROOT, "gone", tenant="acme")
    # Loads: a-sql holds one acme item; shared one in acme and one in globex (it serves both); a
    # lapsed lease of a-both's counts for nothing.
    body = WorkItemCreate.model_validate(task(offer={"type": "agent"}))
    for holder, tenant, ttl in [
        ("a-sql", "acme", 60),
        ("shared", "acme", 60),
        ("shared", "globex", 60),
        ("a-both", "acme", 60),
        ("twin", "acme", 60),
        ("twin", "globex", 60),
        ("twin", "globex", 60),
    ]:
        item = create_item(factory, as_agent("seeder", tenant), body, max_payload_bytes=1 << 20)[0]
        with factory.begin() as session:
            claims.claim(session, as_agent(holder, tenant), item.id, ttl_s=ttl, default_ttl_s=60)
    now = utcnow()
    with factory.begin() as session:
        for agent_id, ago_s in [("a-sql", 10), ("a-both", 200), ("shared", 30)]:
            session.execute(
                update(Agent).where(Agent.id == agent_id).values(last_heartbeat_at=now - timedelta(seconds=ago_s))
            )
        session.execute(
            update(WorkItem)
            .where(WorkItem.claimed_by_id == "a-both")
            .values(lease_expires_at=now - timedelta(seconds=1))
        )
        assert record_spend(session, "acme", "a-sql", 4.0, now=now)
    # An item routed (assigned) to a-py and not claimed yet.
    assigned = WorkItemCreate.model_validate(task(assignee={"type": "agent", "id": "a-py"}))
    create_item(factory, as_agent("seeder", "acme"), assigned, max_payload_bytes=1 << 20)
    return client


@pytest.mark.parametrize("capabilities", [(), ("sql",), ("python",), ("sql", "python"), ("cobol",)])
@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_the_pool_is_the_registrys_candidates_that_declare_the_capabilities(
    fleet: TestClient, capabilities: tuple[str, ...], tenant: str
) -> None:
    now = utcnow()
    with sessions(fleet)() as session:
        everyone = candidates(session, tenant, now=now)
        pool = source.pool(session, tenant, now=now, capabilities=frozenset(capabilities), narrow_above=0)
    declaring = [c for c in everyone if all(c.spec.proficiency(n) is not None for n in capabilities)]
    # Routing counts what was routed to an agent and not claimed yet as load too.
    waiting = {"agent:a-py": 1} if tenant == "acme" else {}
    assert list(pool.agents) == [replace(c, load=c.load + waiting.get(c.ref, 0)) for c in declaring]
    assert pool.left_out == len(everyone) - len(declaring)
    if tenant == "acme" and capabilities == ("sql",):
        # The fleet above is what it says (a check of the check).
        by_ref = {c.ref: (c.load, c.liveness, c.spent) for c in pool.agents}
        assert by_ref == {
            "agent:shared": (2, "live", 0.0),
            "agent:a-sql": (1, "live", 4.0),
            "agent:a-both": (0, "stale", 0.0),
            "agent:twin": (1, "dead", 0.0),
        }
        assert pool.left_out == 1  # a-py


def test_a_changed_spec_is_read_again(fleet: TestClient) -> None:
    now = utcnow()
    with sessions(fleet)() as session:
        before = source.pool(session, "acme", now=now, capabilities=frozenset({"sql"}), narrow_above=0)
    assert {c.ref: c.spec.capacity for c in before.agents}["agent:a-sql"] == 3
    with sessions(fleet).begin() as session:
        update_agent(session, ROOT, "a-sql", AgentUpdate(capacity=7), tenant="acme")
    with sessions(fleet)() as session:
        after = source.pool(session, "acme", now=now, capabilities=frozenset({"sql"}), narrow_above=0)
        assert list(after.agents) == [
            c for c in candidates(session, "acme", now=now) if c.spec.proficiency("sql") is not None
        ]
    assert {c.ref: c.spec.capacity for c in after.agents}["agent:a-sql"] == 7


def test_a_small_fleet_is_read_whole_so_every_agent_gets_its_verdict(fleet: TestClient) -> None:
    now = utcnow()
    with sessions(fleet)() as session:
        everyone = candidates(session, "acme", now=now)
        small = source.pool(session, "acme", now=now, capabilities=frozenset({"python"}), narrow_above=len(everyone))
        large = source.pool(
            session, "acme", now=now, capabilities=frozenset({"python"}), narrow_above=len(everyone) - 1
        )
    assert ([c.ref for c in small.agents], small.left_out) == ([c.ref for c in everyone], 0)
    assert [c.ref for c in large.agents] == ["agent:a-both", "agent:a-py"] and large.left_out == len(everyone) - 2


def test_the_item_being_routed_is_not_its_assignees_load(fleet: TestClient) -> None:
    now = utcnow()
    with sessions(fleet)() as session:
        routed = session.scalar(select(WorkItem.id).where(WorkItem.assignee_id == "a-py"))
        assert routed is not None
        loads = {
            item: {c.ref: c.load for c in source.pool(session, "acme", now=now, routing=item, narrow_above=0).agents}
            for item in (None, routed)
        }
    assert (loads[None]["agent:a-py"], loads[routed]["agent:a-py"]) == (1, 0)


@pytest.mark.parametrize("residency", [False, True])
def test_agents_a_rule_rules_out_by_their_specs_are_not_read(fleet: TestClient, residency: bool) -> None:
    # sql at advanced: a-both and twin do it at novice (capabilities, whatever their state). With a
    # residency in EU, shared and a-sql declare no region (data boundary); a-sql is read all the
    # same: its own budget, which its spend decides, is checked first.
    body: dict[str, Any] = {"selectors": [{"kind": "skill", "value": "sql", "min_proficiency": "advanced"}]}
    if residency:
        body["data_residency"] = {"allowed_regions": ["EU"]}
    needs = needs_of(rule(**body).spec, item())
    now = utcnow()
    with sessions(fleet)() as session:
        unscreened = source.pool(session, "acme", now=now, capabilities=frozenset({"sql"}), narrow_above=0)
        screened = source.pool(session, "acme", now=now, needs=needs, narrow_above=0)
    ruled_out = {r.ref: CHECKS[r.stage] for r in screened.ruled_out}
    expected = {"agent:a-both": "capabilities", "agent:twin": "capabilities"}
    if residency:
        expected["agent:shared"] = "data_boundary"
    assert ruled_out == expected
    read = [c for c in unscreened.agents if c.ref not in ruled_out]
    assert list(screened.agents) == read  # the same state, for the others only
    assert screened.left_out == unscreened.left_out
    assert [c.ref for c in read] == (["agent:a-sql"] if residency else ["agent:shared", "agent:a-sql"])


def refs(client: TestClient, tenant: str, capability: str) -> list[str]:
    with sessions(client)() as session:
        found = source.pool(session, tenant, now=utcnow(), capabilities=frozenset({capability}), narrow_above=0)
    return [c.ref for c in found.agents]


def test_the_fleet_kept_in_memory_follows_every_registry_change(fleet: TestClient) -> None:
    # Read once: from here on the fleet is in memory, and each change below must reach the next read.
    assert refs(fleet, "acme", "ocr") == []
    add(fleet, "a-ocr", "acme", {"ocr": "expert"})
    assert refs(fleet, "acme", "ocr") == ["agent:a-ocr"]
    # An operator's agent serves every tenant: its registration reaches acme's fleet too.
    add(fleet, "ops-ocr", ALL_TENANTS, {"ocr": "novice"})
    assert refs(fleet, "acme", "ocr") == ["agent:ops-ocr", "agent:a-ocr"]
    with sessions(fleet).begin() as session:
        update_agent(
            session, ROOT, "a-py", AgentUpdate.model_validate({"capabilities": [{"name": "ocr"}]}), tenant="acme"
        )
    assert refs(fleet, "acme", "ocr") == ["agent:ops-ocr", "agent:a-ocr", "agent:a-py"]
    assert "agent:a-py" not in refs(fleet, "acme", "python")
    with sessions(fleet).begin() as session:
        deregister(session, ROOT, "a-ocr", tenant="acme")
    assert refs(fleet, "acme", "ocr") == ["agent:ops-ocr", "agent:a-py"]
    add(fleet, "a-ocr", "acme", {"ocr": "advanced"})  # back again
    assert refs(fleet, "acme", "ocr") == ["agent:ops-ocr", "agent:a-ocr", "agent:a-py"]
    # globex never saw acme's changes, and reads only its own and the operators'.
    assert refs(fleet, "globex", "ocr") == ["agent:ops-ocr"]


def test_heartbeats_and_spend_leave_the_fleet_stamp_alone(fleet: TestClient) -> None:
    from orchestrator.routing import fleet as fleets

    with sessions(fleet)() as session:
        before = fleets.stamps_of(session, "acme")
    assert None not in before  # registering gave acme and * their stamps
    with sessions(fleet).begin() as session:
        session.execute(update(Agent).where(Agent.tenant == "acme").values(last_heartbeat_at=utcnow()))
        record_spend(session, "acme", "a-sql", 1.0)
        session.flush()
    with sessions(fleet).begin() as session:
        assert fleets.stamps_of(session, "acme") == before
        update_agent(session, ROOT, "a-sql", AgentUpdate(capacity=9), tenant="acme")
        session.flush()
        after = fleets.stamps_of(session, "acme")
    assert after[0] != before[0] and after[1] == before[1]


def test_celery_workers_rows_change_no_fleet_stamp(fleet: TestClient) -> None:
    # Workers are never routing candidates; and the presence fold, which locks worker rows, must
    # not take the stamp row that registry calls take after an agent's row (a deadlock otherwise).
    from models.worker_presence import WorkerPresence
    from orchestrator.agents.workers import fold_workers, forget_gone_workers
    from orchestrator.routing import fleet as fleets

    def present(name: str) -> WorkerPresence:
        now = utcnow()
        return WorkerPresence(name=name, capabilities=["sql"], concurrency=2, started_at=now, beat_at=now)

    factory = sessions(fleet)
    with factory() as session:
        before = fleets.stamps_of(session, "acme")
    with factory.begin() as session:
        fold_workers(session, [present("w-1@host")])
    with factory.begin() as session:
        fold_workers(session, [WorkerPresence(**{**present("w-1@host").model_dump(), "concurrency": 8})])
        session.execute(
            update(Agent).where(Agent.id == "w-1@host").values(last_heartbeat_at=utcnow() - timedelta(days=2))
        )
    with factory.begin() as session:
        assert forget_gone_workers(session, after_s=86_400) == ["w-1@host"]
    with factory() as session:
        assert fleets.stamps_of(session, "acme") == before
    add(fleet, "ops-sql", ALL_TENANTS, {"sql": "expert"})  # an operator's agent does change it
    with factory() as session:
        after = fleets.stamps_of(session, "acme")
    assert after[0] == before[0] and after[1] != before[1]


def test_a_database_made_anew_at_the_same_url_is_not_served_the_old_fleets_specs(tmp_path: Path) -> None:
    # The fleet is kept per URL and tenant; an agent registered again in a new database at that
    # URL, at the same version, may declare something else entirely.
    from orchestrator.storage.db import make_engine, make_session_factory
    from orchestrator.storage.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'routing.db'}"
    seen: list[tuple[list[str], int]] = []
    for capability, capacity in (("sql", 3), ("ocr", 7)):
        engine = make_engine(url)
        upgrade(engine)
        factory = make_session_factory(engine)
        body = {"id": "bot", "tenant": "acme", "agent_type": "actuator", "capacity": capacity}
        with factory.begin() as session:
            register(session, ROOT, AgentCreate.model_validate({**body, "capabilities": [{"name": capability}]}))
        with factory() as session:
            [bot] = source.pool(session, "acme", now=utcnow(), narrow_above=0).agents
        seen.append(([c.name for c in bot.spec.capabilities], bot.spec.capacity))
        engine.dispose()
        (tmp_path / "routing.db").unlink()
    assert seen == [(["sql"], 3), (["ocr"], 7)]
