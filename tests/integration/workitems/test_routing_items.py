"""What routing does to items when no agent is needed to see it: which rules apply to which items,
the decision recorded when nobody fits, the fallback to people, the hitl requirement, the rule's
escalation path as the item's SLA, reroutes of closed and unmatched items, and queue filters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.service.timers import TimerService
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, task

RULES = "/api/v1/routing-rules"
ROUTING = ("work:read", "work:write", "work:claim", "routing:write")


@pytest.fixture
def ops(token: TokenFactory) -> Headers:
    token("user:lead", groups=["leads"])
    return token("user:ops", scopes=ROUTING)


def rule(client: TestClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = client.post(RULES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def create(client: TestClient, headers: Headers, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/work-items", json=task(**extra), headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def routing(client: TestClient, headers: Headers, item_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/work-items/{item_id}/routing", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def history(client: TestClient, headers: Headers, item_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/api/v1/work-items/{item_id}/history", headers=headers).json())


def test_a_matched_item_nobody_fits_is_left_as_it_is_and_the_decision_says_why(
    client: TestClient, ops: Headers
) -> None:
    rule(client, ops, id="db", priority=5, match={"labels": ["db"]})
    rule(client, ops, id="any", priority=1)
    item = create(client, ops, labels=["db", "prod"])
    assert item["assignee"] is None and item["offer"] == {"type": "human", "scope": "work:claim", "group": None}
    [decision] = routing(client, ops, item["id"])
    assert decision["trigger"] == "created" and decision["itemId"] == item["id"]
    assert (decision["ruleId"], decision["ruleVersion"], decision["ruleTenant"]) == ("db", 1, "acme")
    assert decision["chosenAssignee"] is None and decision["candidates"] == [] and decision["omitted"] == {}
    assert decision["reason"] == (
        "no candidate for rule db v1: no agent is registered for the tenant (nor by 1 other matching rule(s))"
    )
    assert decision["actor"] == "user:ops"
    routed = [e for e in history(client, ops, item["id"]) if e["action"] == "routed"]
    assert [(e["actor"], e["details"]["decision"], e["details"]["chosenAssignee"]) for e in routed] == [
        ("system", decision["id"], None)
    ]


def test_an_item_no_rule_matches_gets_no_decision(client: TestClient, ops: Headers) -> None:
    rule(client, ops, id="changes", match={"types": ["change"]})
    rule(client, ops, id="off", enabled=False)
    item = create(client, ops)
    assert routing(client, ops, item["id"]) == []
    assert "routed" not in [e["action"] for e in history(client, ops, item["id"])]


def test_an_item_created_with_an_assignee_keeps_it(client: TestClient, ops: Headers) -> None:
    rule(client, ops, id="all", fallback={"group": "leads"})
    item = create(client, ops, assignee={"type": "user", "id": "ann"})
    assert item["assignee"] == {"type": "user", "id": "ann"} and routing(client, ops, item["id"]) == []


def test_the_operators_rules_apply_to_every_tenant_and_a_tenants_only_to_its_own(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    operator = token("user:op", scopes=["admin"], tenant="*")
    globex = token("user:g", scopes=ROUTING, tenant="globex")
    rule(client, ops, id="acme-only", priority=9)
    assert client.post(RULES, json={"id": "shared"}, headers=operator).status_code == 201
    theirs = create(client, globex)
    [decision] = routing(client, globex, theirs["id"])
    assert (decision["ruleId"], decision["ruleTenant"]) == ("shared", "*")
    ours = create(client, ops)
    assert [(d["ruleId"], d["ruleTenant"]) for d in routing(client, ops, ours["id"])] == [("acme-only", "acme")]
    # Another tenant's item's decisions are a 404, like the item.
    assert client.get(f"/api/v1/work-items/{ours['id']}/routing", headers=globex).status_code == 404


def test_decisions_name_the_live_version(client: TestClient, ops: Headers) -> None:
    rule(client, ops, id="r", match={"labels": ["x"]})
    first = create(client, ops, labels=["x"])
    rule(client, ops, id="r", match={"labels": ["x"]}, priority=3)
    second = create(client, ops, labels=["x"])
    assert client.delete(f"{RULES}/r", headers=ops).status_code == 204
    third = create(client, ops, labels=["x"])
    assert [d["ruleVersion"] for d in routing(client, ops, first["id"])] == [1]
    assert [d["ruleVersion"] for d in routing(client, ops, second["id"])] == [2]
    assert routing(client, ops, third["id"]) == []  # disabled: never applied


def test_with_a_fallback_an_item_nobody_fits_goes_to_people(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    rule(client, ops, id="db", match={"labels": ["db"]}, fallback={"group": "leads"})
    item = create(client, ops, labels=["db"], offer={"type": "agent", "capability": "sql"})
    assert item["offer"] == {"type": "human", "scope": "work:claim", "group": "leads"}
    [decision] = routing(client, ops, item["id"])
    assert decision["reason"].endswith("; offered to people in group leads")
    lead = token("user:lead2", groups=["leads"])
    assert [i["id"] for i in client.get("/api/v1/queues/available", headers=lead).json()["items"]] == [item["id"]]


def test_a_rules_hitl_requirement_is_recorded_on_the_item(client: TestClient, ops: Headers) -> None:
    rule(client, ops, id="gated", hitl={"required": True, "gates": ["privacy_review"]})
    item = create(client, ops)
    assert item["hitl"] == {"required": True, "gates": ["privacy_review"], "rule_id": "gated"}
    assert client.get(f"/api/v1/work-items/{item['id']}", headers=ops).json()["hitl"] == item["hitl"]
    plain = create(client, ops, labels=["x"])
    assert client.delete(f"{RULES}/gated", headers=ops).status_code == 204
    assert create(client, ops)["hitl"] is None and plain["hitl"] is not None


def test_the_rules_escalation_path_becomes_the_items_sla(client: TestClient, ops: Headers) -> None:
    escalation = {
        "onTimeoutMs": 60_000,
        "steps": [
            {"afterMs": 0, "action": "notify", "to": ["assignee"]},
            {"afterMs": 30_000, "action": "escalate", "to": ["leads"]},
        ],
    }
    rule(client, ops, id="esc", match={"labels": ["esc"]}, escalation=escalation)
    item = create(client, ops, labels=["esc"])
    assert item["sla"] == {
        "target_ms": 60_000,
        "warn_at_pct": None,
        "breach_action": "notify",
        "breach_to": None,
        "escalation": [
            {"after_ms": 0, "action": "notify", "to": "assignee"},
            {"after_ms": 30_000, "action": "escalate", "to": "leads"},
        ],
    }
    # An item with an SLA of its own keeps it.
    own = create(client, ops, labels=["esc"], sla={"target_ms": 5_000})
    assert own["sla"]["target_ms"] == 5_000 and own["sla"]["escalation"] == []
    # The durable timers run it: at 30 s the item is offered to the leads.
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    at = datetime.fromisoformat(item["created_at"]) + timedelta(seconds=31)
    TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: at).tick()
    after = client.get(f"/api/v1/work-items/{item['id']}", headers=ops).json()
    assert after["offer"]["group"] == "leads"
    actions = [e["action"] for e in history(client, ops, item["id"])]
    assert actions.count("escalation_step") == 2 and "escalated" in actions


def test_a_reroute_of_an_unmatched_item_decides_nothing_and_of_a_closed_one_is_a_409(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    item = create(client, ops)
    response = client.post(f"/api/v1/work-items/{item['id']}/reroute", json={"reason": "try"}, headers=ops)
    assert response.status_code == 200 and response.json()["decision"] is None
    assert response.json()["item"]["id"] == item["id"]
    rule(client, ops, id="r")
    again = client.post(f"/api/v1/work-items/{item['id']}/reroute", json={"reason": "now with a rule"}, headers=ops)
    decision = again.json()["decision"]
    assert (decision["trigger"], decision["actor"]) == ("manual", "user:ops")
    assert decision["reason"].endswith("; reroute: now with a rule")
    closed = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "cancelled"}, headers=ops)
    assert closed.status_code == 200
    before = counts(client)
    refused = client.post(f"/api/v1/work-items/{item['id']}/reroute", headers=ops)
    assert refused.status_code == 409 and "closed" in error(refused)["message"]
    assert counts(client) == before
    reader = token("user:r", scopes=["work:read", "work:write"])
    assert client.post(f"/api/v1/work-items/{item['id']}/reroute", headers=reader).status_code == 403


def test_queues_filter_by_type_label_and_lifecycle(client: TestClient, ops: Headers, token: TokenFactory) -> None:
    a = create(client, ops, labels=["db"])
    b = create(client, ops, labels=["db", "urgent"], origin="backlog")
    c = client.post("/api/v1/work-items", json={"type": "epic", "title": "big", "labels": ["db"]}, headers=ops).json()
    me = token("user:worker", scopes=["work:read", "work:claim"])

    def queue(**params: str) -> set[str]:
        response = client.get("/api/v1/queues/available", params=params, headers=me)
        assert response.status_code == 200, response.text
        return {i["id"] for i in response.json()["items"]}

    assert queue() == {a["id"], b["id"], c["id"]}
    assert queue(type="task") == {a["id"], b["id"]}
    assert queue(label="urgent") == {b["id"]}
    assert queue(lifecycle="backlog") == {b["id"]}
    assert queue(type="task", label="db", lifecycle="work") == {a["id"]}
    assert queue(type="change") == set()
    bad = client.get("/api/v1/queues/available", params={"lifecycle": "nope"}, headers=me)
    assert bad.status_code == 422 and error(bad)["details"][0]["path"] == "query.lifecycle"
