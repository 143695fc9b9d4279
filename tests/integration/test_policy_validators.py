"""Validators of policy checks run as handlers by real Celery workers (every message delivered
twice), on SQLite and PostgreSQL: a sync check holds the gate until its run passes (and writes
scan_result evidence) and refuses it when the run fails; an async check lets the transition
through and, failing, opens a remediation item."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.principal import PrincipalType
from orchestrator.api.app import create_app
from orchestrator.local.stack import WorkerSpec
from orchestrator.work.tokens import create_token
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.validators import CAPABILITY
from tests.support import RedisTarget, eventually

POLICY: dict[str, Any] = {
    "id": "scanned-change",
    "checks": [
        {
            "id": "pci",
            "kind": "security",
            "framework": "PCI-DSS",
            "required": True,
            "validator": {"handler": "pci_scan", "capability": CAPABILITY, "mode": "sync"},
        },
        {
            "id": "drift",
            "kind": "compliance",
            "required": True,
            "validator": {"handler": "pci_scan", "capability": CAPABILITY, "mode": "async"},
        },
    ],
    "gates": ["review->done"],
}


@pytest.fixture(scope="module")
def stack(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp(f"validators-{backend}")
    for url in database_url(backend, tmp):
        settings = stack_settings(tmp, url, redis_target, fault_duplicate_delivery=True)
        harness = Harness(settings, redis_target, workers=[WorkerSpec([CAPABILITY], ["tests.integration.validators"])])
        try:
            harness.start()
            yield harness
        finally:
            harness.stop()


@pytest.fixture(scope="module")
def api(stack: Harness) -> Iterator[TestClient]:
    with TestClient(create_app(stack.settings)) as client:
        yield client


def headers(stack: Harness, principal: str, scopes: list[str]) -> dict[str, str]:
    kind, ident = principal.split(":")
    with stack.wiring.sessions.begin() as session:
        issued = create_token(
            session, principal_type=PrincipalType(kind), principal_id=ident, tenant="acme", scopes=scopes
        )
    return {"Authorization": f"Bearer {issued.secret}"}


def change_in_review(api: TestClient, who: dict[str, str], scan: str) -> str:
    body = {
        "type": "change",
        "title": f"change scanned {scan}",
        "payload": {
            "changeWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"},
            "approvalPolicyId": POLICY["id"],
            "rollbackPlan": "revert",
            "scan": scan,
        },
    }
    item = api.post("/api/v1/work-items", json=body, headers=who)
    assert item.status_code == 201, item.text
    item_id = str(item.json()["id"])
    for status in ("in_progress", "review"):
        assert api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": status}, headers=who).status_code == 200
    return item_id


def settled(api: TestClient, who: dict[str, str], item_id: str, check: str) -> dict[str, Any]:
    def run() -> dict[str, Any] | None:
        runs = api.get(f"/api/v1/work-items/{item_id}/validations", headers=who).json()
        done = [r for r in runs if r["check"] == check and r["state"] != "pending"]
        return done[-1] if done else None

    return eventually(run, timeout=60, what=f"the {check} validator's result on {item_id}")


def gate_lacks(api: TestClient, who: dict[str, str], item_id: str) -> list[tuple[str, str, str | None]]:
    response = api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=who)
    assert response.status_code == 409, response.text
    return [(d["kind"], d["path"], d["state"]) for d in response.json()["error"]["details"]]


@pytest.fixture(scope="module")
def writer(stack: Harness, api: TestClient) -> dict[str, str]:
    admin = headers(stack, "user:compliance", ["policies:write"])
    assert api.post("/api/v1/policies", json=POLICY, headers=admin).status_code == 201
    return headers(stack, "user:alice", ["work:read", "work:write"])


def test_a_sync_validator_holds_the_gate_until_it_passes(stack: Harness, api: TestClient, writer: Any) -> None:
    item_id = change_in_review(api, writer, "pass")
    assert gate_lacks(api, writer, item_id) == [("validation", "checks.pci", "not_requested")]
    requested = api.post(f"/api/v1/work-items/{item_id}/validations", json={"check": "pci"}, headers=writer)
    assert requested.status_code == 202 and requested.json()["state"] == "pending", requested.text
    run = settled(api, writer, item_id, "pci")
    assert run["state"] == "passed" and run["evidence_id"] == f"EV-{run['id']}"
    evidence = api.get(f"/api/v1/work-items/{item_id}/evidence", headers=writer).json()
    assert [(e["evidenceType"], e["checks"], e["createdBy"]) for e in evidence] == [
        ("scan_result", ["pci"], "validator:pci_scan")
    ]
    done = api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=writer)
    assert done.status_code == 200, done.text
    # Delivered twice: the handler runs at least once (at-least-once, invariant 3); the run is
    # settled once, and a second report changes nothing.
    assert int(stack.books.get(f"test:scans:{item_id}") or 0) >= 1
    history = api.get(f"/api/v1/work-items/{item_id}/history", headers=writer).json()
    # (The transition dispatched the policy's async check, drift, which may have passed by now too.)
    settlements = [e for e in history if e["action"] == "validation_passed" and e["details"]["check"] == "pci"]
    assert len(settlements) == 1, history


def test_a_failing_sync_validator_refuses_the_gate(stack: Harness, api: TestClient, writer: Any) -> None:
    item_id = change_in_review(api, writer, "fail")
    api.post(f"/api/v1/work-items/{item_id}/validations", json={"check": "pci"}, headers=writer)
    run = settled(api, writer, item_id, "pci")
    assert run["state"] == "failed" and run["error"] == "2 findings on pci"
    refused = api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=writer)
    assert refused.status_code == 409
    detail = refused.json()["error"]["details"][0]
    assert (detail["kind"], detail["state"], detail["check"]) == ("validation", "failed", "pci")
    assert "2 findings on pci" in detail["message"]
    assert api.get(f"/api/v1/work-items/{item_id}/evidence", headers=writer).json() == []


def test_a_failing_async_validator_opens_a_remediation_item(stack: Harness, api: TestClient, writer: Any) -> None:
    # A policy of the async check alone: nothing else holds the gate.
    admin = headers(stack, "user:compliance2", ["policies:write"])
    async_only = {"id": "drift-only", "checks": [POLICY["checks"][1]], "gates": ["review->done"]}
    assert api.post("/api/v1/policies", json=async_only, headers=admin).status_code == 201
    body = {
        "type": "change",
        "title": "change with an async check",
        "payload": {
            "changeWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"},
            "approvalPolicyId": "drift-only",
            "rollbackPlan": "revert",
            "scan": "fail",
        },
    }
    item_id = api.post("/api/v1/work-items", json=body, headers=writer).json()["id"]
    for status in ("in_progress", "review", "done"):
        moved = api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": status}, headers=writer)
        assert moved.status_code == 200, moved.text  # an async check never holds the transition
    history = api.get(f"/api/v1/work-items/{item_id}/history", headers=writer).json()
    assert "flagged" in [e["action"] for e in history]
    run = settled(api, writer, item_id, "drift")
    assert run["state"] == "failed" and run["remediation_item_id"]
    remediation = api.get(f"/api/v1/work-items/{run['remediation_item_id']}", headers=writer).json()
    assert remediation["type"] == "remediation" and remediation["status"] == "planned"
    assert remediation["payload"]["workItem"] == item_id
