"""Policy gates through the API, on SQLite and PostgreSQL: a versioned policy registry; a gated
transition refused with exactly what it lacks, then let through; four-eyes; a rejection;
immutable evidence with checked digests; hitl needing a person; tenants kept apart."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from models.work_tables import WorkItem
from orchestrator.metrics.instruments import INSTRUMENTS
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions, task

APPROVER_SCOPES = ("work:read", "work:approve")
POLICY: dict[str, Any] = {
    "id": "pci-change",
    "description": "PCI change control",
    "checks": [
        {"id": "pci", "kind": "compliance", "framework": "PCI-DSS", "required": True},
        {"kind": "privacy", "dataClassification": "RESTRICTED"},
    ],
    "approvalSteps": [
        {"role": "Security Officer", "action": "approve"},
        {"role": "Agency Lead", "action": "approve"},
    ],
    "gates": ["review->done"],
}


def change(policy: str = "pci-change", **extra: Any) -> dict[str, Any]:
    return {
        "type": "change",
        "title": "rotate the card keys",
        "payload": {
            "changeWindow": {"start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"},
            "approvalPolicyId": policy,
            "rollbackPlan": "restore the old keys",
        },
        **extra,
    }


def register(client: TestClient, token: TokenFactory, policy: dict[str, Any] = POLICY) -> None:
    admin = token("user:compliance", scopes=["policies:write", "policies:read"])
    response = client.post("/api/v1/policies", json=policy, headers=admin)
    assert response.status_code in (200, 201), response.text


def to_review(client: TestClient, headers: Headers, item_id: str) -> None:
    for status in ("in_progress", "review"):
        moved = client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": status}, headers=headers)
        assert moved.status_code == 200, moved.text


def missing(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 409, response.text
    body = error(response)
    assert body["code"] == "gate_unmet"
    return [(d["kind"], d["path"]) for d in body["details"]]


def approval_count() -> float:
    """How many gates this process saw get their last approval (the latency histogram's count)."""
    return INSTRUMENTS.get_sample_value("workyard_approval_seconds_count", {"gate": "policy"}) or 0.0


def field(response: Any) -> str:
    """The first wrong field a 422 names (a schema error's path starts at the body)."""
    path = str(error(response)["details"][0]["path"])
    return path.removeprefix("body.")


def evidence(evidence_id: str = "ev-pci-1", **extra: Any) -> dict[str, Any]:
    return {
        "id": evidence_id,
        "evidenceType": "attachment",
        "checks": ["pci"],
        "metadata": {"auditor": "QSA Ltd"},
        "artifacts": [{"name": "aoc.txt", "content": "attestation of compliance"}],
        **extra,
    }


def approve(client: TestClient, headers: Headers, item_id: str, **body: Any) -> Any:
    return client.post(
        f"/api/v1/work-items/{item_id}/approvals",
        json={"decision": "approve", "justification": "reviewed the plan", **body},
        headers=headers,
    )


def test_the_registry_keeps_every_version(client: TestClient, token: TokenFactory) -> None:
    writer = token("user:compliance", scopes=["policies:write", "policies:read"])
    first = client.post("/api/v1/policies", json=POLICY, headers=writer)
    assert first.status_code == 201 and first.json()["version"] == 1
    assert first.json()["approvalSteps"][0]["role"] == "Security Officer"
    assert client.post("/api/v1/policies", json=POLICY, headers=writer).status_code == 200
    second = client.post("/api/v1/policies", json={**POLICY, "description": "v2"}, headers=writer)
    assert second.status_code == 201 and second.json()["version"] == 2
    live = client.get("/api/v1/policies/pci-change", headers=writer).json()
    old = client.get("/api/v1/policies/pci-change?version=1", headers=writer).json()
    assert (live["version"], live["description"], old["description"]) == (2, "v2", "PCI change control")
    assert [p["id"] for p in client.get("/api/v1/policies", headers=writer).json()["policies"]] == ["pci-change"]
    # Scopes: a worker's token can neither read nor write policies.
    worker = token("user:bob")
    assert client.get("/api/v1/policies", headers=worker).status_code == 403
    assert client.post("/api/v1/policies", json=POLICY, headers=worker).status_code == 403


def test_bad_policies_name_the_wrong_field_and_write_nothing(client: TestClient, token: TokenFactory) -> None:
    writer = token("user:compliance", scopes=["policies:write", "policies:read"])
    before = counts(client)
    cases = [
        ({**POLICY, "checks": [{"kind": "risk", "maxRiskLevel": "HUGE"}]}, "checks.0.maxRiskLevel"),
        ({**POLICY, "checks": [{"kind": "magic"}]}, "checks.0.kind"),
        ({**POLICY, "gates": ["review=>done"]}, "gates.0"),
        ({**POLICY, "approvalSteps": [{"role": ""}]}, "approvalSteps.0.role"),
        ({**POLICY, "checks": [{"kind": "risk"}, {"kind": "risk"}]}, "checks"),
    ]
    for body, path in cases:
        response = client.post("/api/v1/policies", json=body, headers=writer)
        assert response.status_code == 422, (path, response.text)
        assert field(response).startswith(path), (path, response.json())
    assert counts(client) == before


def test_a_gate_refuses_with_exactly_what_is_missing_then_lets_the_transition_through(
    client: TestClient, token: TokenFactory
) -> None:
    register(client, token)
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    to_review(client, alice, item["id"])
    done = f"/api/v1/work-items/{item['id']}/transition"

    refused = client.post(done, json={"to": "done"}, headers=alice)
    assert missing(refused) == [
        ("approval", "approvalSteps.0"),
        ("approval", "approvalSteps.1"),
        ("evidence", "checks.pci"),
    ]
    details = error(refused)["details"]
    assert details[0]["role"] == "Security Officer" and details[2]["check"] == "pci"
    gate = client.get(f"/api/v1/work-items/{item['id']}/gate", headers=alice).json()
    assert gate["gates"] == [{"to": "done", "open": False, "missing": details}]
    assert client.get(f"/api/v1/work-items/{item['id']}", headers=alice).json()["status"] == "review"

    added = client.post(f"/api/v1/work-items/{item['id']}/evidence", json=evidence(), headers=alice)
    assert added.status_code == 201, added.text
    assert missing(client.post(done, json={"to": "done"}, headers=alice)) == [
        ("approval", "approvalSteps.0"),
        ("approval", "approvalSteps.1"),
    ]
    carol = token("user:carol", scopes=APPROVER_SCOPES, groups=["Security Officer"])
    dave = token("user:dave", scopes=APPROVER_SCOPES, groups=["Agency Lead"])
    first = approve(client, carol, item["id"], evidence=["ev-pci-1"])
    assert first.status_code == 201, first.text
    assert (first.json()["step"], first.json()["approver"], first.json()["evidence"]) == (0, "user:carol", ["ev-pci-1"])
    assert approve(client, carol, item["id"], evidence=["ev-pci-1"]).status_code == 200  # a retry adds nothing
    assert missing(client.post(done, json={"to": "done"}, headers=alice)) == [("approval", "approvalSteps.1")]
    observed = approval_count()
    assert approve(client, dave, item["id"]).status_code == 201
    # The approval that completed the gate's steps is observed once: the gate's approval latency.
    assert approval_count() == observed + 1

    passed = client.post(done, json={"to": "done"}, headers=alice)
    assert passed.status_code == 200 and passed.json()["status"] == "done"
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=alice).json()
    actions = [e["action"] for e in history]
    assert actions.count("approved") == 2 and "evidence" in actions
    record = next(e for e in history if e["action"] == "gate_passed")
    assert record["details"]["transition"] == "review->done" and len(record["details"]["approvals"]) == 2
    assert record["details"]["evidence"] == ["ev-pci-1"] and record["details"]["policy_version"] == 1
    listed = client.get(f"/api/v1/work-items/{item['id']}/approvals", headers=alice).json()
    assert [(a["approver"], a["decision"], a["status"]) for a in listed] == [
        ("user:carol", "approve", "review"),
        ("user:dave", "approve", "review"),
    ]


def test_default_gates_hold_the_start_and_an_unknown_policy_holds_everything(
    client: TestClient, token: TokenFactory
) -> None:
    register(client, token, {**POLICY, "gates": None})
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    start = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "in_progress"}, headers=alice)
    assert ("approval", "approvalSteps.0") in missing(start)
    unknown = client.post("/api/v1/work-items", json=change("no-such-policy"), headers=alice).json()
    start = client.post(f"/api/v1/work-items/{unknown['id']}/transition", json={"to": "in_progress"}, headers=alice)
    assert missing(start) == [("policy", "payload.approvalPolicyId")]


def test_four_eyes(client: TestClient, token: TokenFactory) -> None:
    register(client, token)
    both = ["Security Officer", "Agency Lead"]
    alice = token("user:alice", scopes=("work:read", "work:write", "work:claim", "work:approve"), groups=both)
    bob = token("user:bob", scopes=("work:read", "work:write", "work:claim", "work:approve"), groups=both)
    item = client.post("/api/v1/work-items", json=change(assignee={"type": "user", "id": "bob"}), headers=alice).json()
    to_review(client, bob, item["id"])
    # The creator, and the assignee who moved the work along, may not approve it.
    for who in (alice, bob):
        refused = approve(client, who, item["id"])
        assert refused.status_code == 403 and error(refused)["code"] == "four_eyes", refused.text
    # One person approves one step; the second needs someone else.
    carol = token("user:carol", scopes=APPROVER_SCOPES, groups=both)
    assert approve(client, carol, item["id"], step=0).status_code == 201
    second = approve(client, carol, item["id"], step=1)
    assert second.status_code == 403 and error(second)["code"] == "four_eyes"
    assert error(second)["details"][0]["path"] == "approver"
    # Holding the role is required too.
    eve = token("user:eve", scopes=APPROVER_SCOPES, groups=["Security Officer"])
    wrong_role = approve(client, eve, item["id"], step=1)
    assert wrong_role.status_code == 403 and error(wrong_role)["details"][0]["path"] == "role"
    # And the scope.
    frank = token("user:frank", scopes=("work:read",), groups=both)
    assert approve(client, frank, item["id"], step=1).status_code == 403
    done = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "done"}, headers=bob)
    assert missing(done) == [("approval", "approvalSteps.1"), ("evidence", "checks.pci")]


def test_a_rejection_blocks_the_gate(client: TestClient, token: TokenFactory) -> None:
    register(client, token, {**POLICY, "checks": []})
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    to_review(client, alice, item["id"])
    carol = token("user:carol", scopes=APPROVER_SCOPES, groups=["Security Officer"])
    dave = token("user:dave", scopes=APPROVER_SCOPES, groups=["Agency Lead"])
    rejected = client.post(
        f"/api/v1/work-items/{item['id']}/approvals",
        json={"decision": "reject", "justification": "no rollback test"},
        headers=carol,
    )
    assert rejected.status_code == 201 and rejected.json()["decision"] == "reject"
    assert approve(client, dave, item["id"]).status_code == 201
    refused = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "done"}, headers=alice)
    kinds = missing(refused)
    assert kinds == [("rejected", f"approvals.{rejected.json()['id']}"), ("approval", "approvalSteps.0")]
    assert "no rollback test" in error(refused)["message"]
    # Changing one's mind in the same round is refused: the rejection stands.
    assert approve(client, carol, item["id"]).status_code == 409
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=alice).json()
    assert [e["reason"] for e in history if e["action"] == "rejected"] == ["no rollback test"]
    # The item may still fail (review -> failed is not gated).
    failed = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "failed"}, headers=alice)
    assert failed.status_code == 200


def test_evidence_is_immutable_and_its_digests_are_checked(client: TestClient, token: TokenFactory) -> None:
    register(client, token)
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    url = f"/api/v1/work-items/{item['id']}/evidence"
    before = counts(client)
    digest = hashlib.sha256(b"scan report").hexdigest()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"artifacts": [{"content": "scan report", "sha256": "0" * 64}]}, "artifacts.0.sha256"),
        ({"artifacts": [{"uri": "s3://bucket/report.pdf"}]}, "artifacts.0.sha256"),
        ({"artifacts": [{"uri": "s3://bucket/report.pdf", "sha256": "XYZ"}]}, "artifacts.0.sha256"),
        ({"artifacts": [{"uri": "s3://b/r.pdf", "sha256": digest.upper()}]}, "artifacts.0.sha256"),
        ({"artifacts": [{"name": "nothing"}]}, "artifacts.0.content"),
        ({"artifacts": []}, "artifacts"),
        ({"checks": ["no-such-check"]}, "checks.0"),
        ({"workItemId": "WI-other"}, "workItemId"),
        ({"createdBy": "user:mallory"}, "createdBy"),
    ]
    for extra, path in bad:
        response = client.post(url, json=evidence(**extra), headers=alice)
        assert response.status_code == 422, (path, response.text)
        assert field(response) == path, (path, response.json())
    assert counts(client) == before

    body = evidence(
        artifacts=[
            {"name": "report", "content": "scan report", "sha256": digest},
            {"id": "ext-1", "uri": "s3://bucket/report.pdf", "sha256": digest},
        ]
    )
    first = client.post(url, json=body, headers=alice)
    assert first.status_code == 201, first.text
    written = first.json()
    assert (written["workItemId"], written["policyId"]) == (item["id"], "pci-change")
    assert written["createdBy"] == "user:alice"
    assert [a["id"] for a in written["artifacts"]] == ["ART-ev-pci-1-001", "ext-1"]
    assert [a["sha256"] for a in written["artifacts"]] == [digest, digest]
    again = client.post(url, json=body, headers=alice)
    assert again.status_code == 200 and again.json() == written
    other = client.post(url, json={**body, "metadata": {"auditor": "someone else"}}, headers=alice)
    assert other.status_code == 409 and error(other)["details"][0]["path"] == "id"
    assert client.get(url, headers=alice).json() == [written]
    # No route changes or removes evidence.
    assert client.put(url, json=body, headers=alice).status_code == 405
    assert client.delete(f"{url}/ev-pci-1", headers=alice).status_code in (404, 405)
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=alice).json()
    assert [e["details"]["evidence"] for e in history if e["action"] == "evidence"] == ["ev-pci-1"]


def test_hitl_needs_a_person(client: TestClient, token: TokenFactory) -> None:
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=task(), headers=alice).json()
    with sessions(client).begin() as session:
        # As a routing rule with hitl.required puts it (orchestrator.routing.assign).
        session.execute(
            update(WorkItem)
            .where(WorkItem.id == item["id"])
            .values(hitl={"required": True, "gates": ["release"], "rule_id": "r1"})
        )
    url = f"/api/v1/work-items/{item['id']}/transition"
    assert client.post(url, json={"to": "in_progress"}, headers=alice).status_code == 200  # work starts freely
    assert missing(client.post(url, json={"to": "done"}, headers=alice)) == [("human_approval", "hitl")]
    reviewer = token("agent:reviewer", scopes=APPROVER_SCOPES)
    assert approve(client, reviewer, item["id"]).status_code == 201
    assert missing(client.post(url, json={"to": "done"}, headers=alice)) == [("human_approval", "hitl")]
    person = token("user:carol", scopes=APPROVER_SCOPES)
    assert approve(client, person, item["id"]).status_code == 201
    assert client.post(url, json={"to": "done"}, headers=alice).status_code == 200


def test_hitl_with_a_policy_needs_one_person_among_the_approvers(client: TestClient, token: TokenFactory) -> None:
    register(client, token, {**POLICY, "checks": []})
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    with sessions(client).begin() as session:
        session.execute(
            update(WorkItem)
            .where(WorkItem.id == item["id"])
            .values(hitl={"required": True, "gates": [], "rule_id": "r1"})
        )
    to_review(client, alice, item["id"])
    security = token("agent:scanner", scopes=APPROVER_SCOPES, groups=["Security Officer"])
    lead = token("agent:planner", scopes=APPROVER_SCOPES, groups=["Agency Lead"])
    assert approve(client, security, item["id"]).status_code == 201
    assert approve(client, lead, item["id"]).status_code == 201
    url = f"/api/v1/work-items/{item['id']}/transition"
    assert missing(client.post(url, json={"to": "done"}, headers=alice)) == [("human_approval", "hitl")]
    person = token("user:carol", scopes=APPROVER_SCOPES)
    human = approve(client, person, item["id"])
    assert human.status_code == 201 and human.json()["step"] is None
    assert client.post(url, json={"to": "done"}, headers=alice).status_code == 200


def test_another_tenant_sees_and_approves_nothing(client: TestClient, token: TokenFactory) -> None:
    register(client, token)
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    to_review(client, alice, item["id"])
    assert client.post(f"/api/v1/work-items/{item['id']}/evidence", json=evidence(), headers=alice).status_code == 201
    stranger = token(
        "user:mallory",
        tenant="globex",
        scopes=("work:read", "work:write", "work:approve", "policies:read"),
        groups=["Security Officer", "Agency Lead"],
    )
    base = f"/api/v1/work-items/{item['id']}"
    assert client.get(f"{base}/evidence", headers=stranger).status_code == 404
    assert client.get(f"{base}/approvals", headers=stranger).status_code == 404
    assert client.get(f"{base}/gate", headers=stranger).status_code == 404
    assert approve(client, stranger, item["id"], step=0).status_code == 404
    assert client.post(f"{base}/evidence", json=evidence("ev-x"), headers=stranger).status_code == 404
    assert client.get("/api/v1/policies/pci-change", headers=stranger).status_code == 404
    assert client.get("/api/v1/policies", headers=stranger).json() == {"policies": []}
    # The same evidence id in another tenant is another evidence.
    own = client.post("/api/v1/work-items", json=task(), headers=stranger).json()
    mine = client.post(f"/api/v1/work-items/{own['id']}/evidence", json=evidence(checks=[]), headers=stranger)
    assert mine.status_code == 201, mine.text


def test_an_operators_policy_is_shared_and_a_tenants_own_wins(client: TestClient, token: TokenFactory) -> None:
    operator = token("user:ops", tenant="*", scopes=["policies:write", "policies:read"])
    shared = client.post("/api/v1/policies", json={**POLICY, "approvalSteps": []}, headers=operator)
    assert shared.status_code == 201 and shared.json()["tenant"] == "*"
    reader = token("user:alice", scopes=["policies:read"])
    assert client.get("/api/v1/policies/pci-change", headers=reader).json()["tenant"] == "*"
    register(client, token)
    assert client.get("/api/v1/policies/pci-change", headers=reader).json()["tenant"] == "acme"


def approved_change(client: TestClient, token: TokenFactory) -> tuple[str, Headers, Headers, Headers]:
    """A change in review with its evidence and both approval steps approved (by carol, then dave)."""
    register(client, token)
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change(), headers=alice).json()["id"]
    to_review(client, alice, item_id)
    assert client.post(f"/api/v1/work-items/{item_id}/evidence", json=evidence(), headers=alice).status_code == 201
    carol = token("user:carol", scopes=[*APPROVER_SCOPES, "work:write"], groups=["Security Officer"])
    dave = token("user:dave", scopes=APPROVER_SCOPES, groups=["Agency Lead"])
    assert approve(client, carol, item_id).status_code == 201
    assert approve(client, dave, item_id).status_code == 201
    return item_id, alice, carol, dave


def test_the_items_policy_cannot_be_dropped_or_swapped_by_an_edit(client: TestClient, token: TokenFactory) -> None:
    register(client, token)
    alice = token("user:alice")
    item = client.post(
        "/api/v1/work-items",
        json={"type": "task", "title": "t", "payload": {"approvalPolicyId": "pci-change"}},
        headers=alice,
    ).json()
    for payload in ({"x": 1}, {"approvalPolicyId": "weaker"}):
        response = client.patch(f"/api/v1/work-items/{item['id']}", json={"payload": payload}, headers=alice)
        assert response.status_code == 409, response.text
        assert [d["path"] for d in error(response)["details"]] == ["payload.approvalPolicyId"]
    kept = client.patch(
        f"/api/v1/work-items/{item['id']}", json={"payload": {"approvalPolicyId": "pci-change", "x": 1}}, headers=alice
    )
    assert kept.status_code == 200, kept.text


def test_an_edit_after_approval_needs_approving_again(client: TestClient, token: TokenFactory) -> None:
    item_id, alice, _, _ = approved_change(client, token)
    edited = change()["payload"] | {"rollbackPlan": "none"}
    assert client.patch(f"/api/v1/work-items/{item_id}", json={"payload": edited}, headers=alice).status_code == 200
    refused = client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=alice)
    assert missing(refused) == [("approval", "approvalSteps.0"), ("approval", "approvalSteps.1")]


def test_an_approver_may_not_carry_the_work_through_its_gate(client: TestClient, token: TokenFactory) -> None:
    item_id, alice, carol, _ = approved_change(client, token)
    done = f"/api/v1/work-items/{item_id}/transition"
    assert missing(client.post(done, json={"to": "done"}, headers=carol)) == [("approval", "approvalSteps.0")]
    assert client.post(done, json={"to": "done"}, headers=alice).status_code == 200


def test_a_pending_validator_run_is_given_up_when_its_policy_changed(client: TestClient, token: TokenFactory) -> None:
    scanned: dict[str, Any] = {
        "id": "scanned",
        "checks": [
            {
                "id": "scan",
                "kind": "security",
                "required": True,
                "validator": {"handler": "scan", "capability": "nobody"},
            }
        ],
        "gates": ["review->done"],
    }
    admin = token("user:compliance", scopes=["policies:write", "policies:read"])
    bad = {
        **scanned,
        "checks": [{**scanned["checks"][0], "validator": {"handler": "scan", "capability": "Nobody Here"}}],
    }
    assert client.post("/api/v1/policies", json=bad, headers=admin).status_code == 422
    register(client, token, scanned)
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change("scanned"), headers=alice).json()["id"]
    runs = f"/api/v1/work-items/{item_id}/validations"
    first = client.post(runs, json={"check": "scan"}, headers=alice)
    assert first.status_code == 202 and first.json()["state"] == "pending"
    # Nobody consumes cap.nobody: asking again answers the same pending run...
    assert client.post(runs, json={"check": "scan"}, headers=alice).json()["id"] == first.json()["id"]
    # ...until the policy is mended: then the old run is given up and a new one dispatched.
    mended = {
        **scanned,
        "checks": [{**scanned["checks"][0], "validator": {"handler": "scan", "capability": "scanner"}}],
    }
    register(client, token, mended)
    second = client.post(runs, json={"check": "scan"}, headers=alice)
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"], second.text
    states = {r["id"]: r["state"] for r in client.get(runs, headers=alice).json()}
    assert states == {first.json()["id"]: "failed", second.json()["id"]: "pending"}
