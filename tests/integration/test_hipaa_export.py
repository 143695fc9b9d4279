"""The catalog's HIPAA data export end to end, on SQLite and PostgreSQL, with the residency
validator run by a real Celery worker (every message delivered twice): the shipped policy and
template registered as an operator and a tenant would, an export instantiated, its gate refusing
`review -> done` with exactly what is missing, then evidence of the records exported, the
validator's pass and a privacy officer's approval letting it through; and an export to a region
outside the United States held by the validator's failure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from models.principal import ALL_TENANTS, PrincipalType
from orchestrator.api.app import create_app
from orchestrator.local.stack import WorkerSpec
from orchestrator.work.tokens import create_token
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.support import RedisTarget, eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICY = json.loads((EXAMPLES / "policies" / "policy-hipaa-export-v1.json").read_text())
TEMPLATE = yaml.safe_load((EXAMPLES / "catalog" / "export.hipaa.yaml").read_text())
MANIFEST = "dataset=claims-2026-q3 records=1200 fields=member_id,claim_id,dx_codes,amount\n"


@pytest.fixture(scope="module")
def stack(backend: str, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp(f"hipaa-{backend}")
    for url in database_url(backend, tmp):
        settings = stack_settings(tmp, url, redis_target, fault_duplicate_delivery=True)
        harness = Harness(settings, redis_target, workers=[WorkerSpec(["residency"], ["examples.hipaa"])])
        try:
            harness.start()
            yield harness
        finally:
            harness.stop()


@pytest.fixture(scope="module")
def api(stack: Harness) -> Iterator[TestClient]:
    with TestClient(create_app(stack.settings)) as client:
        yield client


def token(
    stack: Harness, principal: str, scopes: list[str], *, tenant: str = "acme", groups: tuple[str, ...] = ()
) -> dict[str, str]:
    kind, ident = principal.split(":")
    with stack.wiring.sessions.begin() as session:
        issued = create_token(
            session,
            principal_type=PrincipalType(kind),
            principal_id=ident,
            tenant=tenant,
            scopes=scopes,
            groups=list(groups),
        )
    return {"Authorization": f"Bearer {issued.secret}"}


@pytest.fixture(scope="module")
def people(stack: Harness, api: TestClient) -> dict[str, dict[str, str]]:
    operator = token(stack, "user:root", ["admin"], tenant=ALL_TENANTS)
    assert api.post("/api/v1/policies", json=POLICY, headers=operator).status_code in (200, 201)
    author = token(stack, "user:cora", ["templates:write", "work:read"])
    registered = api.post("/api/v1/work-item-templates", json=TEMPLATE, headers=author)
    assert registered.status_code in (200, 201), registered.text
    assert registered.json()["schemaChecked"] is True
    return {
        "analyst": token(stack, "user:alice", ["work:read", "work:write"]),
        "officer": token(stack, "user:pat", ["work:read", "work:approve"], groups=("Privacy Officer",)),
    }


def export_in_review(api: TestClient, analyst: dict[str, str], region: str, key: str) -> dict[str, Any]:
    params = {"dataset": "claims-2026-q3", "recipient": "Acme Research, DUA-4471", "destinationRegion": region}
    made = api.post(
        "/api/v1/work-item-templates/export:hipaa/instantiate",
        json={"parameters": params, "idempotence_key": key},
        headers=analyst,
    )
    assert made.status_code == 201, made.text
    [item] = made.json()["items"]
    for status in ("in_progress", "review"):
        moved = api.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": status}, headers=analyst)
        assert moved.status_code == 200, moved.text
    return dict(item)


def lacks(api: TestClient, who: dict[str, str], item_id: str) -> list[tuple[str, str, str | None]]:
    response = api.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=who)
    assert response.status_code == 409, response.text
    return sorted((d["kind"], d["path"], d.get("state")) for d in response.json()["error"]["details"])


def residency(api: TestClient, who: dict[str, str], item_id: str) -> dict[str, Any]:
    requested = api.post(f"/api/v1/work-items/{item_id}/validations", json={"check": "residency"}, headers=who)
    assert requested.status_code == 202, requested.text

    def settled() -> dict[str, Any] | None:
        runs = api.get(f"/api/v1/work-items/{item_id}/validations", headers=who).json()
        done = [r for r in runs if r["check"] == "residency" and r["state"] != "pending"]
        return dict(done[-1]) if done else None

    return eventually(settled, timeout=60, what=f"the residency check of {item_id}")


def test_a_hipaa_export_passes_its_gate_with_evidence_a_residency_check_and_a_privacy_officer(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    analyst, officer = people["analyst"], people["officer"]
    item = export_in_review(api, analyst, "us-east-1", "export-q3")
    assert item["templates_applied"] == [{"template_id": "tpl:export:hipaa:1.0.0", "version": "1.0.0"}]
    assert item["payload"]["approvalPolicyId"] == "policy-hipaa-export-v1"
    assert lacks(api, analyst, item["id"]) == [
        ("approval", "approvalSteps.0", None),
        ("evidence", "checks.privacy", None),
        ("validation", "checks.residency", "not_requested"),
    ]
    evidence = {
        "id": "ev-export-q3-manifest",
        "evidenceType": "attachment",
        "checks": ["privacy"],
        "metadata": {"records": 1200, "dua": "DUA-4471"},
        "artifacts": [{"name": "manifest.txt", "content": MANIFEST}],
    }
    written = api.post(f"/api/v1/work-items/{item['id']}/evidence", json=evidence, headers=analyst)
    assert written.status_code == 201, written.text
    assert written.json()["artifacts"][0]["sha256"] == hashlib.sha256(MANIFEST.encode()).hexdigest()
    assert residency(api, analyst, item["id"])["state"] == "passed"
    assert lacks(api, analyst, item["id"]) == [("approval", "approvalSteps.0", None)]
    # Four eyes: the analyst who worked the export may not approve it.
    refused = api.post(
        f"/api/v1/work-items/{item['id']}/approvals",
        json={"decision": "approve", "justification": "mine"},
        headers=analyst,
    )
    assert refused.status_code == 403
    approved = api.post(
        f"/api/v1/work-items/{item['id']}/approvals",
        json={"decision": "approve", "justification": "DUA-4471 covers these fields", "evidence": [evidence["id"]]},
        headers=officer,
    )
    assert approved.status_code in (200, 201), approved.text
    done = api.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "done"}, headers=analyst)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    history = api.get(f"/api/v1/work-items/{item['id']}/history", headers=analyst).json()
    events = history["events"] if isinstance(history, dict) else history
    assert {"instantiated", "gate_passed"} <= {e["action"] for e in events}


def test_an_export_leaving_the_united_states_is_held_by_the_residency_check(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    analyst = people["analyst"]
    item = export_in_review(api, analyst, "eu-west-1", "export-eu")
    run = residency(api, analyst, item["id"])
    assert run["state"] == "failed"
    assert ("validation", "checks.residency", "failed") in lacks(api, analyst, item["id"])
