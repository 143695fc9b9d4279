"""Routing over a fleet registered in the agent registry, through the API, on SQLite and
PostgreSQL: each strategy, every §12.1 check's rejection, the triggers (creation, a holder's
failure, a lapsed lease, an SLA breach, a manual reroute), a reroute taking a claim over, and
tenants kept apart."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from models.agent_tables import Agent
from models.base import utcnow
from models.principal import ALL_TENANTS
from orchestrator.routing.engine import FIRST_READ
from orchestrator.service.timers import TimerService
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions, task

OPS_SCOPES = ("work:read", "work:write", "work:claim", "routing:write", "agents:write", "agents:read")
AGENT_SCOPES = ("work:read", "work:claim")
SQL = [{"kind": "capability", "value": "sql"}]


class Fleet:
    """Registers agents (live: the operator beats for them), makes rules and items, and speaks for the agents."""

    def __init__(self, client: TestClient, token: TokenFactory, tenant: str = "acme"):
        self.client = client
        self.token = token
        self.tenant = tenant
        self.ops = token(f"user:ops-{tenant}", scopes=OPS_SCOPES, tenant=tenant)
        self.agents: dict[str, Headers] = {}

    def agent(self, name: str, *, live: bool = True, **spec: Any) -> Headers:
        body = {"id": name, "agent_type": "stateless_tool_caller", **spec}
        response = self.client.post("/api/v1/agents", json=body, headers=self.ops)
        assert response.status_code == 201, response.text
        if live:
            beat = self.client.post(f"/api/v1/agents/{name}/heartbeat", headers=self.ops)
            assert beat.status_code == 200 and beat.json()["liveness"] == "live", beat.text
        self.agents[name] = self.token(f"agent:{name}", scopes=AGENT_SCOPES, tenant=self.tenant)
        return self.agents[name]

    def rule(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/routing-rules", json=body, headers=self.ops)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def item(self, **extra: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/work-items", json=task(**extra), headers=self.ops)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def read(self, item_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/api/v1/work-items/{item_id}", headers=self.ops).json())

    def decisions(self, item_id: str) -> list[dict[str, Any]]:
        return list(self.client.get(f"/api/v1/work-items/{item_id}/routing", headers=self.ops).json())

    def actions(self, item_id: str) -> list[str]:
        return [e["action"] for e in self.client.get(f"/api/v1/work-items/{item_id}/history", headers=self.ops).json()]

    def claim_next(self, name: str) -> dict[str, Any] | None:
        response = self.client.post("/api/v1/queues/claim-next", json={"ttl_s": 30}, headers=self.agents[name])
        assert response.status_code in (200, 204), response.text
        return dict(response.json()) if response.status_code == 200 else None

    def call(self, name: str, item: dict[str, Any], action: str, **body: Any) -> Any:
        return self.client.post(f"/api/v1/work-items/{item['id']}/{action}", json=body, headers=self.agents[name])

    def silence(self, name: str, seconds: float) -> None:
        """The agent was last heard from ``seconds`` ago (it stopped beating)."""
        with sessions(self.client).begin() as session:
            session.execute(
                update(Agent).where(Agent.id == name).values(last_heartbeat_at=utcnow() - timedelta(seconds=seconds))
            )

    def timers_at(self, at: datetime) -> int:
        wiring = self.client.app.state.wiring  # type: ignore[attr-defined]
        return TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: at).tick()


def assignee(item: dict[str, Any]) -> str | None:
    party = item["assignee"]
    return f"{party['type']}:{party['id']}" if party else None


@pytest.fixture
def fleet(client: TestClient, token: TokenFactory) -> Fleet:
    return Fleet(client, token)


@pytest.fixture
def sql_fleet(fleet: Fleet) -> Fleet:
    """Five agents: three fit a sql rule; bob is the most proficient but already busy."""
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "intermediate"}], capacity=4, cost_per_item=2)
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "expert"}], capacity=10, cost_per_item=5)
    fleet.agent("cyd", capabilities=[{"name": "sql", "proficiency": "advanced"}], capacity=2, cost_per_item=1)
    fleet.agent("dan", capabilities=[{"name": "sql", "proficiency": "expert"}], live=False)
    fleet.agent("eve", capabilities=[{"name": "python", "proficiency": "expert"}])
    # bob holds 8 of his 10: items given to him by name, claimed by him.
    for n in range(8):
        fleet.item(title=f"bob's {n}", assignee={"type": "agent", "id": "bob"})
        assert fleet.claim_next("bob") is not None
    return fleet


# strategy -> who gets the first item (bob expert but 2/10 free; ann 4/4; cyd 2/2 and cheapest)
FIRST = {
    "priority": "agent:bob",
    "capacity_aware": "agent:ann",
    "cost_minimizing": "agent:cyd",
    "round_robin": "agent:ann",
}


@pytest.mark.parametrize("strategy", sorted(FIRST))
def test_each_strategy_over_the_registered_fleet(sql_fleet: Fleet, strategy: str) -> None:
    sql_fleet.rule(id="db", match={"labels": ["db"]}, selectors=SQL, strategy=strategy)
    item = sql_fleet.item(labels=["db"])
    assert assignee(item) == FIRST[strategy]
    [decision] = sql_fleet.decisions(item["id"])
    assert decision["chosenAssignee"] == FIRST[strategy] and decision["strategy"] == strategy
    verdicts = {c["ref"]: (c["verdict"], c["check"]) for c in decision["candidates"]}
    assert verdicts["agent:dan"] == ("rejected", "liveness") and verdicts["agent:eve"] == ("rejected", "capabilities")
    assert sorted(r for r, (v, _) in verdicts.items() if v in ("chosen", "eligible")) == [
        "agent:ann",
        "agent:bob",
        "agent:cyd",
    ]


def test_round_robin_takes_turns_kept_in_the_database(sql_fleet: Fleet) -> None:
    sql_fleet.rule(id="db", match={"labels": ["db"]}, selectors=SQL, strategy="round_robin")
    turns = [assignee(sql_fleet.item(labels=["db"])) for _ in range(4)]
    assert turns == ["agent:ann", "agent:bob", "agent:cyd", "agent:ann"]


def test_every_check_rejects_its_agent_and_the_one_that_fits_gets_the_item(fleet: Fleet) -> None:
    good: dict[str, Any] = {
        "capabilities": [{"name": "sql", "proficiency": "expert"}],
        "autonomy": "L3",
        "cost_per_item": 5,
        "data_boundary": {"regions": ["KE"]},
        "safety": {"allowed_actions": ["restart", "read"]},
    }
    fleet.agent("fits", **good)
    fleet.agent("no-sql", **{**good, "capabilities": [{"name": "python", "proficiency": "expert"}]})
    fleet.agent("timid", **{**good, "autonomy": "L2"})
    fleet.agent("pricey", **{**good, "cost_per_item": 50})
    fleet.agent("abroad", **{**good, "data_boundary": {"regions": ["KE", "EU"]}})
    fleet.agent("careful", **{**good, "safety": {"prohibited_actions": ["restart"]}})
    fleet.agent("full", **{**good, "capacity": 1})
    fleet.agent("gone", **good, live=False)
    fleet.item(title="keeps full busy", assignee={"type": "agent", "id": "full"})
    assert fleet.claim_next("full") is not None
    fleet.rule(
        id="strict",
        selectors=[{"kind": "skill", "value": "sql", "min_proficiency": "advanced"}],
        costBudget={"currency": "USD", "limit": 10},
        dataResidency={"allowedRegions": ["KE", "UG"]},
        match={"labels": ["ops"]},
    )
    item = fleet.item(labels=["ops"], risk_level="high", metadata={"actions": ["restart"]})
    assert assignee(item) == "agent:fits"
    [decision] = fleet.decisions(item["id"])
    assert {c["ref"]: c["check"] for c in decision["candidates"] if c["verdict"] == "rejected"} == {
        "agent:no-sql": "capabilities",
        "agent:timid": "autonomy",
        "agent:pricey": "budget",
        "agent:abroad": "data_boundary",
        "agent:careful": "safety",
        "agent:full": "capacity",
        "agent:gone": "liveness",
    }
    whys = {c["ref"]: c["why"] for c in decision["candidates"]}
    assert whys["agent:timid"] == "autonomy L2 is below L3, which a high-risk item needs"
    assert whys["agent:careful"] == "is prohibited from restart"


def test_created_the_item_goes_to_the_chosen_agent_alone(sql_fleet: Fleet) -> None:
    sql_fleet.rule(id="db", match={"labels": ["db"]}, selectors=SQL, strategy="cost_minimizing")
    item = sql_fleet.item(labels=["db"], offer={"type": "agent", "capability": "sql"})
    assert assignee(item) == "agent:cyd"
    # Nobody else may take it; cyd's claim-next serves it.
    refused = sql_fleet.call("ann", item, "claim")
    assert refused.status_code == 403, refused.text
    assert sql_fleet.claim_next("ann") is None
    claimed = sql_fleet.claim_next("cyd")
    assert claimed is not None and claimed["id"] == item["id"]
    assert "routed" in sql_fleet.actions(item["id"])


def test_a_holder_that_fails_hands_the_item_to_the_next_agent_until_none_is_left(fleet: Fleet) -> None:
    budget = {"unit": "USD", "limit": 100, "period": "day"}
    for name, level in [("ann", "expert"), ("bob", "advanced")]:
        fleet.agent(name, capabilities=[{"name": "sql", "proficiency": level}], budget=budget)
    fleet.rule(id="db", selectors=SQL)  # priority: ann, then bob
    item = fleet.item()
    assert assignee(item) == "agent:ann"
    held = fleet.claim_next("ann")
    assert held is not None
    failed = fleet.call("ann", item, "fail", lease_epoch=held["lease_epoch"], reason="cannot reach the db", cost=2.5)
    assert failed.status_code == 200, failed.text
    after = failed.json()
    # ann gave it up as a release does (no new epoch); its failure and its cost are recorded, and
    # the same call sent again (a retry whose answer was lost) answers the same.
    assert after["lease_epoch"] == held["lease_epoch"]
    again = fleet.call("ann", item, "fail", lease_epoch=held["lease_epoch"], reason="cannot reach the db", cost=2.5)
    assert again.status_code == 200 and again.json()["assignee"] == after["assignee"], again.text
    other = fleet.call("ann", item, "fail", lease_epoch=held["lease_epoch"], reason="something else")
    assert other.status_code == 409
    ann = fleet.client.get("/api/v1/agents/ann", headers=fleet.ops).json()
    assert ann["spent"] == 2.5
    assert fleet.actions(item["id"])[-2:] == ["failed", "routed"]
    assert (after["status"], assignee(after), after["claim"], after["reason"]) == (
        "todo",
        "agent:bob",
        None,
        "cannot reach the db",
    )
    decisions = fleet.decisions(item["id"])
    assert [(d["trigger"], d["chosenAssignee"], d["actor"]) for d in decisions] == [
        ("created", "agent:ann", "user:ops-acme"),
        ("failure", "agent:bob", "agent:ann"),
    ]
    assert ("agent:ann", "excluded") in {(c["ref"], c["verdict"]) for c in decisions[1]["candidates"]}
    # ann's old claim is gone: its calls are refused.
    assert fleet.call("ann", item, "heartbeat", lease_epoch=held["lease_epoch"]).status_code == 409
    # bob fails it too: nobody who has not failed it is left, so it fails as it would without routing.
    held = fleet.claim_next("bob")
    assert held is not None
    final = fleet.call("bob", item, "fail", lease_epoch=held["lease_epoch"], reason="me neither")
    assert final.status_code == 200 and final.json()["status"] == "cancelled"
    last = fleet.decisions(item["id"])[-1]
    assert last["trigger"] == "failure" and last["chosenAssignee"] is None
    assert last["reason"].startswith("no candidate for rule db v1")
    assert {c["verdict"] for c in last["candidates"]} == {"excluded"}


def test_a_rule_that_does_not_reroute_on_failure_lets_the_item_fail(fleet: Fleet) -> None:
    fleet.agent("ann")
    fleet.agent("bob")
    fleet.rule(id="r", reroute_on=["sla_breach"])
    item = fleet.item()
    name = assignee(item)
    assert name is not None
    held = fleet.claim_next(name.removeprefix("agent:"))
    assert held is not None
    failed = fleet.call(name.removeprefix("agent:"), item, "fail", lease_epoch=held["lease_epoch"], reason="no")
    assert failed.json()["status"] == "cancelled"
    assert [d["trigger"] for d in fleet.decisions(item["id"])] == ["created"]


def test_a_failure_in_review_is_the_reviewers_verdict_and_is_not_rerouted(fleet: Fleet) -> None:
    # ann does the work, then (assigned, so nobody else may) claims it in review and rejects it:
    # that fails the item. Handing it to bob would leave it in review with an agent that can
    # never start it (claim-next hands out only work it can act on).
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "expert"}])
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "advanced"}])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item()
    assert assignee(item) == "agent:ann"
    held = fleet.claim_next("ann")
    assert held is not None
    assert fleet.call("ann", item, "start", lease_epoch=held["lease_epoch"]).status_code == 200
    done = fleet.call("ann", item, "complete", lease_epoch=held["lease_epoch"], result={"ok": True})
    assert done.status_code == 200 and done.json()["status"] == "review", done.text
    review = fleet.call("ann", item, "claim", ttl_s=30)
    assert review.status_code == 200, review.text
    rejected = fleet.call("ann", item, "fail", lease_epoch=review.json()["lease_epoch"], reason="the result is wrong")
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], assignee(rejected.json())) == ("cancelled", "agent:ann")
    assert [d["trigger"] for d in fleet.decisions(item["id"])] == ["created"]


def test_a_holder_failing_a_blocked_item_hands_it_on_blocked(fleet: Fleet) -> None:
    # Paused work is still work: the next agent takes it up once it is unblocked.
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "expert"}])
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "advanced"}])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item()
    held = fleet.claim_next("ann")
    assert held is not None
    assert fleet.call("ann", item, "start", lease_epoch=held["lease_epoch"]).status_code == 200
    blocked = fleet.client.post(
        f"/api/v1/work-items/{item['id']}/transition", json={"to": "blocked"}, headers=fleet.ops
    )
    assert blocked.status_code == 200, blocked.text
    failed = fleet.call("ann", item, "fail", lease_epoch=held["lease_epoch"], reason="waiting on the vendor")
    assert failed.status_code == 200, failed.text
    assert (failed.json()["status"], assignee(failed.json())) == ("blocked", "agent:bob")
    assert [d["trigger"] for d in fleet.decisions(item["id"])] == ["created", "failure"]


def test_a_lapsed_lease_reroutes_the_item_away_from_a_silent_holder(fleet: Fleet) -> None:
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "expert"}])
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "novice"}])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item()
    held = fleet.claim_next("ann")
    assert held is not None and assignee(item) == "agent:ann"
    fleet.silence("ann", 3600)  # ann died: no heartbeat for an hour
    lapsed = datetime.fromisoformat(held["claim"]["lease_expires_at"]) + timedelta(seconds=1)
    assert fleet.timers_at(lapsed) == 1
    after = fleet.read(item["id"])
    assert assignee(after) == "agent:bob" and after["claim"] is None
    last = fleet.decisions(item["id"])[-1]
    assert (last["trigger"], last["previousAssignee"], last["chosenAssignee"]) == (
        "lease_expired",
        "agent:ann",
        "agent:bob",
    )
    assert {c["ref"]: c["check"] for c in last["candidates"]}["agent:ann"] == "liveness"
    assert fleet.actions(item["id"])[-2:] == ["lease_expired", "routed"]


def test_an_sla_breach_reroutes_the_item(fleet: Fleet) -> None:
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "expert"}])
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "novice"}])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item(sla={"target_ms": 1000})
    assert assignee(item) == "agent:ann"
    fleet.silence("ann", 3600)
    assert fleet.timers_at(datetime.fromisoformat(item["created_at"]) + timedelta(milliseconds=1001)) == 1
    assert assignee(fleet.read(item["id"])) == "agent:bob"
    assert [d["trigger"] for d in fleet.decisions(item["id"])] == ["created", "sla_breach"]


def test_a_reroute_takes_the_claim_from_the_holder(fleet: Fleet) -> None:
    fleet.agent("ann", capabilities=[{"name": "sql", "proficiency": "expert"}], groups=["day"])
    fleet.agent("bob", capabilities=[{"name": "sql", "proficiency": "novice"}], groups=["night"])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item()
    held = fleet.claim_next("ann")
    assert held is not None
    started = fleet.call("ann", item, "start", lease_epoch=held["lease_epoch"])
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    # The night shift takes over: a new version of the rule, and a reroute.
    fleet.rule(id="db", selectors=[*SQL, {"kind": "group", "value": "night"}])
    response = fleet.client.post(
        f"/api/v1/work-items/{item['id']}/reroute", json={"reason": "shift change"}, headers=fleet.ops
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["decision"]["chosenAssignee"] == "agent:bob" and moved["decision"]["ruleVersion"] == 2
    assert moved["decision"]["reason"].endswith("; reroute: shift change")
    after = moved["item"]
    assert (assignee(after), after["claim"], after["status"]) == ("agent:bob", None, "in_progress")
    assert after["lease_epoch"] == held["lease_epoch"] + 1
    # ann's calls on its old claim are refused; bob claims the item and finishes it.
    calls: list[tuple[str, dict[str, Any]]] = [
        ("complete", {"result": {"ok": 1}}),
        ("heartbeat", {}),
        ("fail", {"reason": "x"}),
    ]
    for action, body in calls:
        refused = fleet.call("ann", item, action, lease_epoch=held["lease_epoch"], **body)
        assert refused.status_code == 409, (action, refused.text)
    assert error(refused)["code"] == "conflict"
    taken = fleet.claim_next("bob")
    assert taken is not None and taken["id"] == item["id"] and taken["lease_epoch"] == held["lease_epoch"] + 2
    done = fleet.call("bob", item, "complete", lease_epoch=taken["lease_epoch"], result={"ok": 1})
    assert done.status_code == 200 and done.json()["status"] == "review"
    history = fleet.client.get(f"/api/v1/work-items/{item['id']}/history", headers=fleet.ops).json()
    [moved_event] = [e for e in history if e["action"] == "reassigned"]
    assert (moved_event["actor"], moved_event["details"]["from"], moved_event["details"]["to"]) == (
        "user:ops-acme",
        "agent:ann",
        "agent:bob",
    )


def test_a_reroute_that_picks_the_holder_again_keeps_its_claim(fleet: Fleet) -> None:
    fleet.agent("ann", capacity=1)
    fleet.rule(id="r")
    item = fleet.item()
    held = fleet.claim_next("ann")
    assert held is not None
    response = fleet.client.post(f"/api/v1/work-items/{item['id']}/reroute", headers=fleet.ops)
    after = response.json()["item"]
    # ann is at capacity 1 with this very item: keeping it adds nothing, so it still fits.
    assert assignee(after) == "agent:ann" and after["claim"]["lease_epoch"] == held["lease_epoch"]
    assert "reassigned" not in fleet.actions(item["id"])


def test_another_tenants_agents_are_never_candidates(client: TestClient, token: TokenFactory, fleet: Fleet) -> None:
    globex = Fleet(client, token, tenant="globex")
    globex.agent("theirs", capabilities=[{"name": "sql", "proficiency": "expert"}])
    fleet.agent("ours", capabilities=[{"name": "sql", "proficiency": "novice"}])
    fleet.rule(id="db", selectors=SQL)
    item = fleet.item()
    assert assignee(item) == "agent:ours"
    assert [c["ref"] for c in fleet.decisions(item["id"])[0]["candidates"]] == ["agent:ours"]
    # An operator's agent (tenant *) serves every tenant.
    operator = token("user:root", scopes=["admin"], tenant="*")
    body = {"id": "shared", "agent_type": "actuator", "capabilities": [{"name": "sql", "proficiency": "expert"}]}
    assert client.post("/api/v1/agents", json=body, headers=operator).status_code == 201
    assert client.post("/api/v1/agents/shared/heartbeat", headers=operator).status_code == 200
    assert assignee(fleet.item()) == "agent:shared"


def test_a_burst_fills_an_agent_to_its_capacity_not_past_it(fleet: Fleet) -> None:
    # Items routed to an agent and not claimed yet count against its capacity: the cheapest agent
    # gets two of a burst of five, the next cheapest the rest it has room for, then nobody fits.
    fleet.agent("cheap", capacity=2, cost_per_item=1)
    fleet.agent("dearer", capacity=2, cost_per_item=3)
    fleet.rule(id="r", strategy="cost_minimizing")
    burst = [fleet.item() for _ in range(5)]
    assert [assignee(i) for i in burst] == ["agent:cheap", "agent:cheap", "agent:dearer", "agent:dearer", None]
    last = fleet.decisions(burst[-1]["id"])[0]
    assert {c["ref"]: c["check"] for c in last["candidates"]} == {"agent:cheap": "capacity", "agent:dearer": "capacity"}
    # Claiming one changes nothing (it was counted already); finishing one (to review) frees room.
    held = fleet.claim_next("cheap")
    assert held is not None
    assert fleet.call("cheap", held, "start", lease_epoch=held["lease_epoch"]).status_code == 200
    assert assignee(fleet.item()) is None
    done = fleet.call("cheap", held, "complete", lease_epoch=held["lease_epoch"], result={})
    assert done.status_code == 200 and done.json()["status"] == "review"
    assert assignee(fleet.item()) == "agent:cheap"


def test_an_item_a_saga_opens_is_routed_too_at_the_risk_its_step_names(fleet: Fleet, token: TokenFactory) -> None:
    saga_ops = token("user:saga-ops", scopes=["sagas:read", "sagas:write", "templates:write", "work:read"])
    # A high-risk item needs an agent of at least L3: the eager L2 one is passed over.
    fleet.agent("junior", capabilities=[{"name": "review", "proficiency": "expert"}], autonomy="L2")
    fleet.agent("reviewer", capabilities=[{"name": "review", "proficiency": "advanced"}], autonomy="L3")
    fleet.rule(id="reviews", match={"labels": ["review"]}, selectors=[{"kind": "capability", "value": "review"}])
    step = {
        "type": "task",
        "title": "review {input.order_id}",
        "description": "look",
        "labels": ["review"],
        "offer": {"type": "agent"},
        "risk_level": "high",
    }
    template = {
        "name": "routed.order",
        "version": "1.0.0",
        "steps": [{"name": "review", "kind": "work_item", "work_item": step}],
    }
    registered = fleet.client.post("/api/v1/templates", json=template, headers=saga_ops)
    assert registered.status_code == 201, registered.text
    saga = fleet.client.post(
        "/api/v1/sagas", json={"template": "routed.order", "input": {"order_id": "A-1"}}, headers=saga_ops
    )
    assert saga.status_code == 202, saga.text
    [item] = fleet.client.get("/api/v1/work-items", params={"saga_id": saga.json()["id"]}, headers=fleet.ops).json()[
        "items"
    ]
    assert assignee(item) == "agent:reviewer" and item["risk_level"] == "high"
    [decision] = fleet.decisions(item["id"])
    assert decision["actor"] == f"saga:{saga.json()['id']}"
    assert {c["ref"]: c["check"] for c in decision["candidates"]}["agent:junior"] == "autonomy"


def test_a_saga_step_may_not_lower_its_item_types_risk(fleet: Fleet, token: TokenFactory) -> None:
    saga_ops = token("user:saga-ops", scopes=["sagas:read", "sagas:write", "templates:write", "work:read"])
    admin = token("user:root", scopes=["admin"], tenant=ALL_TENANTS)
    kind = {"name": "prod_change", "risk_level": "high", "lifecycle": "work", "schema": {"type": "object"}}
    made = fleet.client.post("/api/v1/work-item-types", json=kind, headers=admin)
    assert made.status_code == 201, made.text
    step = {"type": "prod_change", "title": "change", "offer": {"type": "agent"}, "risk_level": "low"}
    template = {"name": "lowered", "version": "1.0.0", "steps": [{"name": "c", "kind": "work_item", "work_item": step}]}
    assert fleet.client.post("/api/v1/templates", json=template, headers=saga_ops).status_code == 201
    saga = fleet.client.post("/api/v1/sagas", json={"template": "lowered", "input": {}}, headers=saga_ops)
    assert saga.status_code == 202, saga.text
    shown = fleet.client.get(f"/api/v1/sagas/{saga.json()['id']}", headers=saga_ops).json()
    assert shown["state"] == "compensated", shown  # its one step failed: nothing to undo
    assert "risk_level low is below its type's (prod_change: high)" in json.dumps(shown)


def test_a_large_pool_is_read_only_as_far_as_the_strategy_needs_and_the_rest_counted_unread(fleet: Fleet) -> None:
    # 40 agents fit a sql rule, the cheapest first by name: a cost-minimizing decision reads the
    # first FIRST_READ of them (by cost) and needs no more.
    for n in range(40):
        fleet.agent(f"sql-{n:02d}", capabilities=[{"name": "sql", "proficiency": "advanced"}], cost_per_item=n + 1)
    fleet.rule(id="db", match={"labels": ["db"]}, selectors=SQL, strategy="cost_minimizing")
    item = fleet.item(labels=["db"])
    assert assignee(item) == "agent:sql-00"
    [decision] = fleet.decisions(item["id"])
    unread = 40 - FIRST_READ
    assert decision["omitted"] == {"unread": unread}
    assert [c["ref"] for c in decision["candidates"]][:2] == ["agent:sql-00", "agent:sql-01"]
    assert len(decision["candidates"]) == FIRST_READ
    assert decision["reason"].endswith(
        f"{FIRST_READ} of 40 agents found to fit, {unread} not read (by the strategy none of them could come before it)"
    ), decision["reason"]
