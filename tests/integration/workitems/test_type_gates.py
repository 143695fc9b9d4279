"""A work-item type's gates, on SQLite and PostgreSQL: a type gated by an operator's policy gates
every item of it, naming the policy or not; an item, an edit or a template may not swap it for
another; a type with a human in the loop needs a person to approve its items' completion."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error
from tests.integration.workitems.test_policy_gates import APPROVER_SCOPES, approve, missing, to_review
from tests.integration.workitems.test_routing_fleet import Fleet

TYPES = "/api/v1/work-item-types"
SCHEMA = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string", "minLength": 3}}}
POLICY: dict[str, Any] = {
    "id": "vendor-change",
    "description": "changes at a vendor need a security officer's approval",
    "approvalSteps": [{"role": "Security Officer", "action": "approve"}],
    "gates": ["review->done"],
}


def operator(token: TokenFactory) -> Headers:
    return token("user:root", scopes=["admin"], tenant="*")


def gated_type(client: TestClient, token: TokenFactory, **extra: Any) -> dict[str, Any]:
    """The operators' policy, and a type ``vendor.change`` that names it (with ``extra``)."""
    root = operator(token)
    assert client.post("/api/v1/policies", json=POLICY, headers=root).status_code == 201
    body = {"name": "vendor.change", "schema": SCHEMA, "approvalPolicyId": POLICY["id"], **extra}
    response = client.post(TYPES, json=body, headers=root)
    assert response.status_code == 201, response.text
    return dict(response.json())


def item(client: TestClient, headers: Headers, type_name: str = "vendor.change", **payload: Any) -> Any:
    body: dict[str, Any] = {"type": type_name, "title": "rotate the vendor's keys"}
    if payload:
        body["payload"] = payload
    return client.post("/api/v1/work-items", json=body, headers=headers)


def test_a_types_policy_gates_every_item_of_it(client: TestClient, token: TokenFactory) -> None:
    shown = gated_type(client, token)
    assert shown["approvalPolicyId"] == "vendor-change" and shown["hitl"] is None
    assert client.get(f"{TYPES}/vendor.change", headers=token("user:alice")).json()["approvalPolicyId"] == (
        "vendor-change"
    )
    alice = token("user:alice")
    # The item names no policy: its type's gates it.
    created = item(client, alice)
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]
    to_review(client, alice, item_id)
    done = f"/api/v1/work-items/{item_id}/transition"
    assert missing(client.post(done, json={"to": "done"}, headers=alice)) == [("approval", "approvalSteps.0")]
    gate = client.get(f"/api/v1/work-items/{item_id}/gate", headers=alice).json()
    assert (gate["policy_id"], gate["policy_version"], gate["hitl"]) == ("vendor-change", 1, False)
    carol = token("user:carol", scopes=APPROVER_SCOPES, groups=["Security Officer"])
    assert approve(client, carol, item_id).status_code == 201
    passed = client.post(done, json={"to": "done"}, headers=alice)
    assert passed.status_code == 200 and passed.json()["status"] == "done"
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=alice).json()
    record = next(e for e in history if e["action"] == "gate_passed")
    assert record["details"]["transition"] == "review->done"
    details = record["details"]
    assert (details["policy"], details["policy_tenant"], len(details["approvals"])) == ("vendor-change", "*", 1)
    # An item naming its type's policy is gated the same.
    named = item(client, alice, approvalPolicyId="vendor-change")
    assert named.status_code == 201, named.text
    to_review(client, alice, named.json()["id"])
    again = client.post(f"/api/v1/work-items/{named.json()['id']}/transition", json={"to": "done"}, headers=alice)
    assert missing(again) == [("approval", "approvalSteps.0")]


def test_an_item_of_a_gated_type_may_not_name_another_policy(client: TestClient, token: TokenFactory) -> None:
    gated_type(client, token)
    alice = token("user:alice")
    before = counts(client)
    refused = item(client, alice, approvalPolicyId="a-weaker-one")
    assert refused.status_code == 422, refused.text
    assert error(refused)["details"][0]["path"] == "payload.approvalPolicyId"
    assert counts(client) == before
    created = item(client, alice).json()
    url = f"/api/v1/work-items/{created['id']}"
    # An edit that names another policy is refused the same, and changes nothing.
    swapped = client.patch(url, json={"payload": {"approvalPolicyId": "a-weaker-one"}}, headers=alice)
    assert swapped.status_code == 422 and error(swapped)["details"][0]["path"] == "payload.approvalPolicyId"
    assert not client.get(url, headers=alice).json()["payload"]
    kept = client.patch(url, json={"payload": {"approvalPolicyId": "vendor-change", "note": "x"}}, headers=alice)
    assert kept.status_code == 200, kept.text


def test_a_type_names_an_operators_policy_and_stays_as_registered(client: TestClient, token: TokenFactory) -> None:
    root = operator(token)
    tenants = token("user:compliance", scopes=["policies:write", "policies:read"])
    body = {"name": "vendor.change", "schema": SCHEMA, "approvalPolicyId": POLICY["id"]}
    before = counts(client)
    unknown = client.post(TYPES, json=body, headers=root)
    assert unknown.status_code == 422 and error(unknown)["details"][0]["path"] == "approvalPolicyId"
    # A tenant's own policy is not enough: a type is every tenant's.
    assert client.post("/api/v1/policies", json=POLICY, headers=tenants).status_code == 201
    assert client.post(TYPES, json=body, headers=root).status_code == 422
    malformed = client.post(TYPES, json={**body, "approvalPolicyId": "no spaces allowed"}, headers=root)
    assert malformed.status_code == 422 and "approvalPolicyId" in error(malformed)["details"][0]["path"]
    assert counts(client) == {**before, "policies": before["policies"] + 1}
    assert client.post("/api/v1/policies", json=POLICY, headers=root).status_code == 201
    assert client.post(TYPES, json=body, headers=root).status_code == 201
    assert client.post(TYPES, json=body, headers=root).status_code == 200  # the same again
    # Types are immutable: another policy, or a human in the loop, is another definition.
    other = client.post(TYPES, json={**body, "hitl": {"required": True}}, headers=root)
    assert other.status_code == 409, other.text
    assert client.post(TYPES, json={**body, "approvalPolicyId": None}, headers=root).status_code == 409


def test_a_type_with_a_human_in_the_loop_needs_a_person_to_complete_its_items(
    client: TestClient, token: TokenFactory
) -> None:
    root = operator(token)
    body = {"name": "release", "schema": SCHEMA, "hitl": {"required": True, "gates": ["release"]}}
    shown = client.post(TYPES, json=body, headers=root)
    assert shown.status_code == 201, shown.text
    assert shown.json()["hitl"] == {"required": True, "gates": ["release"]}
    alice = token("user:alice")
    created = item(client, alice, "release")
    assert created.status_code == 201, created.text
    url = f"/api/v1/work-items/{created.json()['id']}/transition"
    to_review(client, alice, created.json()["id"])  # work starts freely
    assert missing(client.post(url, json={"to": "done"}, headers=alice)) == [("human_approval", "hitl")]
    reviewer = token("agent:reviewer", scopes=APPROVER_SCOPES)
    assert approve(client, reviewer, created.json()["id"]).status_code == 201
    assert missing(client.post(url, json={"to": "done"}, headers=alice)) == [("human_approval", "hitl")]
    person = token("user:carol", scopes=APPROVER_SCOPES)
    assert approve(client, person, created.json()["id"]).status_code == 201
    assert client.post(url, json={"to": "done"}, headers=alice).status_code == 200


def test_a_template_of_a_gated_type_may_name_only_its_policy(client: TestClient, token: TokenFactory) -> None:
    gated_type(client, token)
    root = operator(token)
    assert client.post("/api/v1/policies", json={**POLICY, "id": "a-weaker-one"}, headers=root).status_code == 201
    author = token("user:ann", scopes=["templates:write", "work:read", "work:write"])
    template = {
        "name": "vendor:keys",
        "version": "1.0.0",
        "title": "vendor key rotation",
        "type": "vendor.change",
        "item": {"title": "rotate the vendor's keys"},
        "approvalPolicyId": "a-weaker-one",
    }
    refused = client.post("/api/v1/work-item-templates", json=template, headers=author)
    assert refused.status_code == 422, refused.text
    assert "approvalPolicyId" in [d["path"] for d in error(refused)["details"]]
    accepted = client.post(
        "/api/v1/work-item-templates", json={**template, "approvalPolicyId": "vendor-change"}, headers=author
    )
    assert accepted.status_code == 201, accepted.text


def test_an_item_of_a_type_with_a_human_in_the_loop_goes_only_to_a_supervised_agent(
    client: TestClient, token: TokenFactory
) -> None:
    root = operator(token)
    body = {"name": "release", "schema": SCHEMA, "hitl": {"required": True}}
    assert client.post(TYPES, json=body, headers=root).status_code == 201
    fleet = Fleet(client, token)
    fleet.agent("solo", capabilities=[{"name": "ship", "proficiency": "expert"}], autonomy="L1")
    fleet.agent("watched", capabilities=[{"name": "ship", "proficiency": "novice"}], autonomy="L2")
    fleet.rule(id="ship", selectors=[{"kind": "capability", "value": "ship"}])
    created = client.post(
        "/api/v1/work-items",
        json={"type": "release", "title": "ship 2.0", "offer": {"type": "agent"}},
        headers=fleet.ops,
    )
    assert created.status_code == 201, created.text
    assert created.json()["assignee"] == {"type": "agent", "id": "watched"}
    [decision] = fleet.decisions(created.json()["id"])
    why = {c["ref"]: c["why"] for c in decision["candidates"]}["agent:solo"]
    assert why == "autonomy L1 is below L2, which an item with a human in the loop needs"
    # A task (no human in the loop) goes to the more proficient one.
    assert fleet.item(offer={"type": "agent"})["assignee"] == {"type": "agent", "id": "solo"}


def test_a_tenants_own_policy_of_the_same_id_does_not_loosen_a_types_gate(
    client: TestClient, token: TokenFactory
) -> None:
    gated_type(client, token)
    tenants = token("user:compliance", scopes=["policies:write", "policies:read"])
    lax = {"id": "vendor-change", "approvalSteps": [], "gates": ["review->done"]}
    assert client.post("/api/v1/policies", json=lax, headers=tenants).status_code == 201
    alice = token("user:alice")
    for payload in ({}, {"approvalPolicyId": "vendor-change"}):
        item_id = item(client, alice, **payload).json()["id"]
        to_review(client, alice, item_id)
        done = client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=alice)
        assert missing(done) == [("approval", "approvalSteps.0")], payload


def test_a_template_naming_another_policy_in_its_items_payload_is_refused(
    client: TestClient, token: TokenFactory
) -> None:
    gated_type(client, token)
    author = token("user:ann", scopes=["templates:write", "work:read", "work:write"])
    template = {
        "name": "vendor:keys",
        "version": "1.0.0",
        "title": "vendor key rotation",
        "type": "vendor.change",
        "item": {"title": "rotate the vendor's keys", "payload": {"approvalPolicyId": "a-weaker-one"}},
    }
    refused = client.post("/api/v1/work-item-templates", json=template, headers=author)
    assert refused.status_code == 422, refused.text
    assert "item.payload.approvalPolicyId" in [d["path"] for d in error(refused)["details"]]
