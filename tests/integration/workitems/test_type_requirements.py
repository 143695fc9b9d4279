"""Work-item types declare the capabilities and risk level an agent needs; an item may raise its
type's risk level, and shows the effective requirements."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi.testclient import TestClient

from models.work_api import WorkItemCreate
from orchestrator.work import items
from tests.integration.workitems.conftest import TokenFactory, error, task

SCHEMA: dict[str, Any] = {"type": "object", "required": ["title"]}


def test_built_in_types_carry_their_risk_levels(client: TestClient, token: TokenFactory) -> None:
    reader = token("user:ann", scopes=["work:read"])
    types = {t["name"]: t for t in client.get("/api/v1/work-item-types", headers=reader).json()}
    risks = {name: t["risk_level"] for name, t in types.items()}
    assert risks["change"] == "high" and risks["remediation"] == "medium" and risks["task"] == "low"
    assert all(t["capabilities"] == [] for t in types.values())
    assert client.get("/api/v1/work-item-types/change", headers=reader).json()["risk_level"] == "high"


def test_a_registered_type_declares_capabilities_and_risk_and_stays_as_registered(
    client: TestClient, token: TokenFactory
) -> None:
    root = token("user:root", scopes=["admin"], tenant="*")
    body = {"name": "db-fix", "schema": SCHEMA, "capabilities": ["postgres-admin"], "risk_level": "critical"}
    created = client.post("/api/v1/work-item-types", json=body, headers=root)
    assert created.status_code == 201, created.text
    assert (created.json()["capabilities"], created.json()["risk_level"]) == (["postgres-admin"], "critical")
    assert client.post("/api/v1/work-item-types", json=body, headers=root).status_code == 200
    riskier = client.post("/api/v1/work-item-types", json={**body, "risk_level": "high"}, headers=root)
    assert riskier.status_code == 409  # types are immutable
    twice = client.post("/api/v1/work-item-types", json={**body, "name": "x", "capabilities": ["a", "a"]}, headers=root)
    assert twice.status_code == 422 and error(twice)["details"][0]["path"] == "body.capabilities"
    plain = client.post("/api/v1/work-item-types", json={"name": "plain", "schema": SCHEMA}, headers=root).json()
    assert (plain["capabilities"], plain["risk_level"]) == ([], "low")

    ops = token("user:ops", scopes=["work:read", "work:write"])
    item = client.post(
        "/api/v1/work-items",
        json={"type": "db-fix", "title": "vacuum", "offer": {"type": "agent", "capability": "summarize"}},
        headers=ops,
    )
    assert item.status_code == 201, item.text
    assert item.json()["required_capabilities"] == ["postgres-admin", "summarize"]
    assert item.json()["risk_level"] == "critical"


def test_an_item_raises_its_types_risk_level_but_never_lowers_it(client: TestClient, token: TokenFactory) -> None:
    ops = token("user:ops", scopes=["work:read", "work:write"])
    plain = client.post("/api/v1/work-items", json=task(), headers=ops).json()
    assert (plain["risk_level"], plain["required_capabilities"]) == ("low", [])
    raised = client.post("/api/v1/work-items", json=task(risk_level="high"), headers=ops)
    assert raised.status_code == 201 and raised.json()["risk_level"] == "high"
    assert client.get(f"/api/v1/work-items/{raised.json()['id']}", headers=ops).json()["risk_level"] == "high"

    change = {
        "type": "change",
        "title": "rotate the keys",
        "payload": {
            "changeWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"},
            "approvalPolicyId": "cab",
            "rollbackPlan": "restore",
        },
    }
    lowered = client.post("/api/v1/work-items", json={**change, "risk_level": "medium"}, headers=ops)
    assert lowered.status_code == 422 and error(lowered)["details"][0]["path"] == "risk_level"
    kept = client.post("/api/v1/work-items", json={**change, "risk_level": "critical"}, headers=ops)
    assert kept.status_code == 201 and kept.json()["risk_level"] == "critical"
    assert client.post("/api/v1/work-items", json=change, headers=ops).json()["risk_level"] == "high"


def test_a_create_without_a_risk_level_hashes_as_before_items_had_one(client: TestClient, token: TokenFactory) -> None:
    # A retry of a create made before the upgrade must still find its item: its stored hash was
    # made from a body without risk_level.
    body = WorkItemCreate.model_validate(task(idempotence_key="k1"))
    # The fields items gained since (the spec's raci, goals, timeouts, plans, ...) were not in it either.
    later = {
        "raci",
        "related_goals",
        "risk_assessment",
        "templates_applied",
        "timeout_ms",
        "overall_timeout_ms",
        "compensation",
    }
    before = body.model_dump(mode="json", exclude={"idempotence_key", "risk_level", *later}) | {"tenant": "acme"}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert items._request_hash("acme", body) == digest
    ops = token("user:ops", scopes=["work:read", "work:write"])
    first = client.post("/api/v1/work-items", json=task(idempotence_key="k1"), headers=ops)
    other = client.post("/api/v1/work-items", json=task(idempotence_key="k1", risk_level="high"), headers=ops)
    assert (first.status_code, other.status_code) == (201, 409)  # a risk level makes it another body
