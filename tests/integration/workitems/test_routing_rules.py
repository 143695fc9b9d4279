"""Routing rules over the API: versions, disabling, who sees and changes which rules, and bad
rules refused naming the field, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error

RULES = "/api/v1/routing-rules"
ROUTING = ("work:read", "work:write", "routing:write")


@pytest.fixture
def acme(token: TokenFactory) -> Headers:
    token("user:lead", groups=["leads"])  # a group rules may escalate and fall back to
    return token("user:acme-ops", scopes=ROUTING)


@pytest.fixture
def operator(token: TokenFactory) -> Headers:
    return token("user:op", scopes=["admin"], tenant="*")


def register(client: TestClient, headers: Headers, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post(RULES, json=body, headers=headers)
    assert response.status_code == status, response.text
    return dict(response.json())


def test_each_registration_of_an_id_adds_a_version_and_the_latest_is_live(client: TestClient, acme: Headers) -> None:
    first = register(client, acme, {"id": "db", "match": {"labels": ["db"]}})
    assert (first["version"], first["tenant"], first["created_by"]) == (1, "acme", "user:acme-ops")
    # The same definition again adds nothing.
    again = register(client, acme, {"id": "db", "match": {"labels": ["db"]}}, status=200)
    assert again["version"] == 1
    second = register(client, acme, {"id": "db", "match": {"labels": ["db", "urgent"]}, "strategy": "round_robin"})
    assert second["version"] == 2
    detail = client.get(f"{RULES}/db", headers=acme).json()
    assert (detail["version"], detail["strategy"], detail["match"]["labels"]) == (2, "round_robin", ["db", "urgent"])
    assert [(v["version"], v["strategy"]) for v in detail["versions"]] == [(1, "priority"), (2, "round_robin")]
    assert [r["version"] for r in client.get(RULES, headers=acme).json()["rules"]] == [2]


def test_deleting_disables_and_registering_again_enables(client: TestClient, acme: Headers) -> None:
    register(client, acme, {"id": "db"})
    assert client.delete(f"{RULES}/db", headers=acme).status_code == 204
    assert client.delete(f"{RULES}/db", headers=acme).status_code == 204  # disabling a disabled rule adds nothing
    detail = client.get(f"{RULES}/db", headers=acme).json()
    assert [(v["version"], v["enabled"]) for v in detail["versions"]] == [(1, True), (2, False)]
    enabled = register(client, acme, {"id": "db"})
    assert (enabled["version"], enabled["enabled"]) == (3, True)
    assert client.delete(f"{RULES}/nope", headers=acme).status_code == 404


def test_the_list_is_in_the_order_rules_are_tried(client: TestClient, acme: Headers, operator: Headers) -> None:
    register(client, acme, {"id": "b", "priority": 5})
    register(client, acme, {"id": "a", "priority": 1})
    register(client, operator, {"id": "shared", "priority": 5})
    register(client, acme, {"id": "c", "priority": 9})
    listed = client.get(RULES, headers=acme).json()["rules"]
    assert [(r["tenant"], r["id"]) for r in listed] == [("acme", "c"), ("acme", "b"), ("*", "shared"), ("acme", "a")]


def test_tenants_see_their_own_rules_and_the_operators(
    client: TestClient, token: TokenFactory, acme: Headers, operator: Headers
) -> None:
    globex = token("user:globex-ops", scopes=ROUTING, tenant="globex")
    register(client, acme, {"id": "mine"})
    shared = register(client, operator, {"id": "everyone", "description": "for every tenant"})
    assert shared["tenant"] == "*"
    # Another tenant's rule does not exist for globex: 404, the same as a rule nobody registered.
    hidden = client.get(f"{RULES}/mine", headers=globex)
    assert hidden.status_code == 404 and error(hidden)["message"] == "no routing rule 'mine'"
    assert client.get(f"{RULES}/mine", params={"tenant": "acme"}, headers=globex).status_code == 404
    before = counts(client)
    assert client.delete(f"{RULES}/mine", headers=globex).status_code == 404
    assert client.delete(f"{RULES}/mine", params={"tenant": "acme"}, headers=globex).status_code == 404
    assert counts(client) == before
    assert [r["id"] for r in client.get(RULES, headers=globex).json()["rules"]] == ["everyone"]
    # The operator's rule: every tenant reads it, none changes it.
    assert client.get(f"{RULES}/everyone", headers=globex).json()["tenant"] == "*"
    refused = client.delete(f"{RULES}/everyone", headers=acme)
    assert refused.status_code == 403 and "operator's" in error(refused)["message"]
    # A tenant registering the same id makes its own rule; the operator's stays.
    assert register(client, globex, {"id": "everyone"})["tenant"] == "globex"
    assert client.get(f"{RULES}/everyone", params={"tenant": "*"}, headers=globex).json()["description"]
    # The operator addresses a tenant's rule by naming the tenant.
    assert client.get(f"{RULES}/mine", params={"tenant": "acme"}, headers=operator).json()["tenant"] == "acme"
    assert client.get(f"{RULES}/mine", headers=operator).status_code == 404
    assert client.delete(f"{RULES}/mine", params={"tenant": "acme"}, headers=operator).status_code == 204


def test_registering_takes_routing_write(client: TestClient, token: TokenFactory) -> None:
    reader = token("user:r", scopes=["work:read", "work:write"])
    refused = client.post(RULES, json={"id": "x"}, headers=reader)
    assert refused.status_code == 403 and error(refused)["details"] == [
        {"path": "scope", "message": "needs routing:write"}
    ]
    another = client.post(RULES, json={"id": "x", "tenant": "globex"}, headers=token("user:w", scopes=ROUTING))
    assert another.status_code == 403


def test_the_specs_camel_case_example_registers(client: TestClient, acme: Headers) -> None:
    body = {
        "id": "route-001",
        "match": {"labels": ["db", "urgent"], "type": ["remediation", "change"]},
        "selectors": [{"kind": "skill", "value": "postgres-admin"}, {"kind": "role", "value": "oncall"}],
        "costBudget": {"currency": "USD", "limit": 1000},
        "dataResidency": {"allowedRegions": ["KE", "UG"]},
        "escalation": {
            "onTimeoutMs": 3600000,
            "steps": [
                {"afterMs": 0, "action": "notify", "to": ["assignee"]},
                {"afterMs": 1800000, "action": "escalate", "to": ["leads"]},
            ],
        },
        "hitl": {"required": True, "gates": ["privacy_review", "security_review"]},
    }
    rule = register(client, acme, body)
    assert rule["match"]["types"] == ["remediation", "change"] and rule["cost_budget"]["limit"] == 1000
    assert rule["data_residency"] == {"allowed_regions": ["KE", "UG"]}
    assert rule["escalation"]["steps"][1] == {"after_ms": 1800000, "action": "escalate", "to": ["leads"]}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"id": "r", "selectors": [{"kind": "wizard", "value": "x"}]}, "body.selectors.0"),
        ({"id": "r", "strategy": "fastest"}, "body.strategy"),
        ({"id": "r", "cost_budget": {"currency": "GBP", "limit": 5}}, "body.cost_budget.currency"),
        ({"id": "r", "match": {"priority": {"min": 90, "max": 10}}}, "body.match.priority"),
        (
            {"id": "r", "costBudget": {"currency": "USD", "limit": 1}, "cost_budget": {"currency": "USD", "limit": 1}},
            "body",
        ),
        (
            {"id": "r", "escalation": {"on_timeout_ms": 5, "steps": [{"after_ms": 1, "action": "escalate"}]}},
            "body.escalation.steps.0",
        ),
        ({"id": "r", "reroute_on": ["whenever"]}, "body.reroute_on.0"),
        ({"id": "a rule"}, "body.id"),
        ({"match": {}}, "body.id"),
        ({"id": "r", "colour": "red"}, "body.colour"),
    ],
)
def test_a_bad_rule_is_a_422_naming_the_field(
    client: TestClient, acme: Headers, body: dict[str, Any], path: str
) -> None:
    before = counts(client)
    response = client.post(RULES, json=body, headers=acme)
    assert response.status_code == 422, response.text
    assert path in [d["path"] for d in error(response)["details"]], error(response)
    assert counts(client) == before


def test_groups_the_rule_offers_items_to_must_be_known(client: TestClient, acme: Headers) -> None:
    body = {
        "id": "r",
        "escalation": {"on_timeout_ms": 5, "steps": [{"after_ms": 1, "action": "escalate", "to": "nobody-here"}]},
        "fallback": {"group": "leads"},
    }
    response = client.post(RULES, json=body, headers=acme)
    assert response.status_code == 422
    assert error(response)["details"] == [{"path": "escalation.steps.0.to", "message": "unknown group 'nobody-here'"}]
    body["escalation"]["steps"][0]["to"] = "leads"  # type: ignore[index]
    register(client, acme, body)


def test_a_tenants_rule_matches_only_its_own_items(client: TestClient, acme: Headers, operator: Headers) -> None:
    response = client.post(RULES, json={"id": "r", "match": {"tenant": "globex"}}, headers=acme)
    assert response.status_code == 422 and error(response)["details"][0]["path"] == "match.tenant"
    register(client, acme, {"id": "r", "match": {"tenant": "acme"}})
    assert register(client, operator, {"id": "r", "match": {"tenant": "globex"}})["tenant"] == "*"
