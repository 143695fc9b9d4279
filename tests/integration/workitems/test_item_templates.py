"""The work-item template catalog over the API, on SQLite and PostgreSQL: registration checked
against the type registry, SemVer versions that never change, inheritance and composition,
typed parameters, instantiation all or nothing, idempotent retries, tenants' own catalogs."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error

TEMPLATES = "/api/v1/work-item-templates"
JSON = {"content-type": "application/json"}
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "catalog"
WINDOW = {"start": "2026-12-06T01:00:00+00:00", "end": "2026-12-06T03:00:00+00:00"}

PCI: dict[str, Any] = {
    "name": "change:pci",
    "version": "1.0.0",
    "title": "PCI change request",
    "type": "change",
    "parameters": {
        "system": {"type": "string", "required": True, "example": "payments-db"},
        "changeWindow": {"type": "timespan", "required": True, "example": WINDOW},
        "rollbackPlan": {"type": "string", "default": "restore the previous release"},
    },
    "item": {
        "title": "PCI change to {params.system}",
        "labels": ["pci"],
        "payload": {
            "changeWindow": "{params.changeWindow}",
            "approvalPolicyId": "policy-change-pci-v1",
            "rollbackPlan": "{params.rollbackPlan}",
        },
    },
    "approvalPolicyId": "policy-change-pci-v1",
    "documentation": "A change to a system in PCI scope.",
}


@pytest.fixture
def review_type(client: TestClient, token: TokenFactory) -> str:
    """A registered type with a title and nothing else required, that may sit under any item."""
    root = token("user:root", scopes=["admin"], tenant="*")
    schema = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string", "minLength": 3}}}
    response = client.post("/api/v1/work-item-types", json={"name": "review", "schema": schema}, headers=root)
    assert response.status_code == 201, response.text
    return "review"


POLICY = {
    "id": "policy-change-pci-v1",
    "checks": [{"id": "pci", "kind": "compliance", "framework": "PCI-DSS", "required": True}],
    "approvalSteps": [{"role": "Security Officer", "action": "approve"}],
}


@pytest.fixture
def author(client: TestClient, token: TokenFactory) -> Headers:
    """A tenant's author; the PCI policy its templates name is the operators' (shared with every tenant)."""
    operator = token("user:root", scopes=["admin"], tenant="*")
    response = client.post("/api/v1/policies", json=POLICY, headers=operator)
    assert response.status_code == 201, response.text
    return token("user:ann", scopes=["templates:write", "work:read", "work:write", "sagas:write", "sagas:read"])


def register(client: TestClient, body: dict[str, Any], headers: Headers, status: int = 201) -> dict[str, Any]:
    response = client.post(TEMPLATES, json=body, headers=headers)
    assert response.status_code == status, response.text[:500]
    return dict(response.json())


def instantiate(
    client: TestClient, name: str, body: dict[str, Any], headers: Headers, status: int = 201
) -> dict[str, Any]:
    response = client.post(f"{TEMPLATES}/{name}/instantiate", json=body, headers=headers)
    assert response.status_code == status, response.text[:500]
    return dict(response.json())


def history(client: TestClient, item_id: str, headers: Headers) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/work-items/{item_id}/history", headers=headers)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    return list(body["events"] if isinstance(body, dict) else body)


def test_a_template_is_registered_read_and_instantiated(client: TestClient, author: Headers) -> None:
    read = register(client, PCI, author)
    assert read["id"] == "tpl:change:pci:1.0.0"
    assert read["approvalPolicyId"] == "policy-change-pci-v1"
    assert read["schemaChecked"] is True  # every parameter the blueprint uses has an example or default
    assert client.get(f"{TEMPLATES}/change:pci", headers=author).json()["version"] == "1.0.0"
    assert [t["id"] for t in client.get(TEMPLATES, headers=author).json()] == ["tpl:change:pci:1.0.0"]

    done = instantiate(client, "change:pci", {"parameters": {"system": "payments-db", "changeWindow": WINDOW}}, author)
    assert done["templateId"] == "tpl:change:pci:1.0.0" and done["created"] is True
    [item] = done["items"]
    assert item["type"] == "change" and item["title"] == "PCI change to payments-db"
    assert item["labels"] == ["pci"]
    assert item["payload"] == {  # the template's policy is in the payload, where the gate reads it
        "changeWindow": WINDOW,
        "approvalPolicyId": "policy-change-pci-v1",
        "rollbackPlan": "restore the previous release",
    }
    assert item["templates_applied"] == [{"template_id": "tpl:change:pci:1.0.0", "version": "1.0.0"}]
    instantiated = [e for e in history(client, item["id"], author) if e["action"] == "instantiated"]
    assert [e["details"]["templatesApplied"] for e in instantiated] == [["tpl:change:pci:1.0.0"]]


def test_the_same_version_again_is_a_no_op_and_other_content_is_a_409(client: TestClient, author: Headers) -> None:
    register(client, PCI, author)
    register(client, PCI, author, status=200)
    changed = {**PCI, "title": "another title"}
    response = client.post(TEMPLATES, json=changed, headers=author)
    assert response.status_code == 409
    assert "register a new version" in error(response)["message"]
    register(client, {**changed, "version": "1.1.0", "migrationNotes": "renamed"}, author)
    register(client, {**changed, "version": "2.0.0-rc.1"}, author)
    # The latest release, not the pre-release; every version by SemVer order.
    assert client.get(f"{TEMPLATES}/change:pci", headers=author).json()["version"] == "1.1.0"
    versions = client.get(f"{TEMPLATES}/change:pci/versions", headers=author).json()
    assert [v["version"] for v in versions] == ["1.0.0", "1.1.0", "2.0.0-rc.1"]
    assert versions[1]["migrationNotes"] == "renamed"
    one = client.get(f"{TEMPLATES}/change:pci", params={"version": "2.0.0-rc.1"}, headers=author)
    assert one.json()["title"] == "another title"
    assert client.get(f"{TEMPLATES}/change:pci", params={"version": "9.9.9"}, headers=author).status_code == 404


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"version": "1.0"}, "body"),
        ({"type": "no-such-type"}, "type"),
        ({"item": {**PCI["item"], "title": "change to {params.sytem}"}}, "item"),
        ({"item": {**PCI["item"], "tenant": "other"}}, "item.tenant"),
        ({"item": {**PCI["item"], "priority": 500}}, "item.priority"),
        ({"parameters": {**PCI["parameters"], "rollbackPlan": {"type": "string", "default": 3}}}, "parameters"),
        ({"parameters": {**PCI["parameters"], "size": {"type": "enum"}}}, "body"),
        ({"extends": "no-such-template"}, "extends"),
        ({"includes": [{"template": "no-such-template"}]}, "includes[0].template"),
        ({"workflow": {"template": "no-such-saga"}}, "workflow.template"),
        ({"approvalPolicyId": "policy-nobody-registered"}, "approvalPolicyId"),
        # The example breaks the type's schema: the change window must be an object.
        (
            {"parameters": {**PCI["parameters"], "changeWindow": {"type": "string", "example": "soon"}}},
            "item.payload.changeWindow",
        ),
    ],
)
def test_a_template_that_cannot_work_is_refused_naming_the_field(
    client: TestClient, author: Headers, change: dict[str, Any], path: str
) -> None:
    before = counts(client)
    response = client.post(TEMPLATES, json={**deepcopy(PCI), **change}, headers=author)
    assert response.status_code == 422, response.text[:300]
    paths = [d["path"] for d in error(response)["details"]]
    assert any(p == path or p.startswith(path + ".") or p.startswith(path + "[") for p in paths), paths
    assert counts(client) == before


def test_bad_parameters_are_refused_each_named_and_nothing_is_created(client: TestClient, author: Headers) -> None:
    register(client, PCI, author)
    before = counts(client)
    response = client.post(
        f"{TEMPLATES}/change:pci/instantiate",
        json={"parameters": {"changeWindow": {"start": WINDOW["end"], "end": WINDOW["start"]}, "colour": "red"}},
        headers=author,
    )
    assert response.status_code == 422
    details = {d["path"]: d["message"] for d in error(response)["details"]}
    assert set(details) == {"parameters.system", "parameters.changeWindow", "parameters.colour"}
    assert "end must come after start" in details["parameters.changeWindow"]
    assert counts(client) == before
    wrong_type = {"parameters": {"system": 7, "changeWindow": WINDOW}}
    response = client.post(f"{TEMPLATES}/change:pci/instantiate", json=wrong_type, headers=author)
    assert [d["path"] for d in error(response)["details"]] == ["parameters.system"]
    assert counts(client) == before


def test_an_instantiation_retried_with_its_key_answers_the_same_items(client: TestClient, author: Headers) -> None:
    register(client, PCI, author)
    body = {"parameters": {"system": "ledger", "changeWindow": WINDOW}, "idempotence_key": "chg-42"}
    first = instantiate(client, "change:pci", body, author)
    again = instantiate(client, "change:pci", body, author, status=200)
    assert again["created"] is False
    assert [i["id"] for i in again["items"]] == [i["id"] for i in first["items"]]
    other = {**body, "parameters": {"system": "billing", "changeWindow": WINDOW}}
    response = client.post(f"{TEMPLATES}/change:pci/instantiate", json=other, headers=author)
    assert response.status_code == 409


def test_a_template_extends_another_and_includes_others_as_child_items(
    client: TestClient, author: Headers, review_type: str
) -> None:
    register(client, PCI, author)
    review = {
        "name": "review:security",
        "version": "1.0.0",
        "type": review_type,
        "parameters": {"subject": {"type": "string", "required": True}},
        "item": {"title": "Security review of {params.subject}", "description": "read it", "labels": ["security"]},
    }
    register(client, review, author)
    # A stricter PCI change: an extra parameter, another title, one more label, and a review
    # included as a child item whose subject comes from the parent's parameter.
    strict = {
        "name": "change:pci-strict",
        "version": "1.0.0",
        "extends": "change:pci",
        "parameters": {"ticket": {"type": "string", "required": True}},
        "item": {"title": "PCI change {params.ticket} to {params.system}", "labels": ["strict"]},
        "includes": [{"template": "review:security", "parameters": {"subject": "{params.system}"}}],
    }
    read = register(client, strict, author)
    assert read["extends"] == "change:pci@1.0.0"
    assert read["type"] == "change" and read["approvalPolicyId"] == "policy-change-pci-v1"
    assert set(read["parameters"]) == {"system", "changeWindow", "rollbackPlan", "ticket"}
    assert read["includes"] == [{"template": "review:security@1.0.0", "parameters": {"subject": "{params.system}"}}]

    params = {"system": "vault", "changeWindow": WINDOW, "ticket": "CHG-7"}
    done = instantiate(client, "change:pci-strict", {"parameters": params, "idempotence_key": "k1"}, author)
    change, child = done["items"]
    assert change["title"] == "PCI change CHG-7 to vault"
    assert sorted(change["labels"]) == ["pci", "strict"]
    assert change["payload"]["rollbackPlan"] == "restore the previous release"
    assert child["type"] == review_type and child["title"] == "Security review of vault"
    assert child["parent_id"] == change["id"]
    assert [t["template_id"] for t in change["templates_applied"]] == [
        "tpl:change:pci-strict:1.0.0",
        "tpl:change:pci:1.0.0",
    ]
    assert child["templates_applied"] == [{"template_id": "tpl:review:security:1.0.0", "version": "1.0.0"}]
    applied = [
        e["details"]["templatesApplied"] for e in history(client, change["id"], author) if e["action"] == "instantiated"
    ]
    assert applied == [["tpl:change:pci-strict:1.0.0", "tpl:change:pci:1.0.0"]]
    # A retry finds both items.
    again = instantiate(client, "change:pci-strict", {"parameters": params, "idempotence_key": "k1"}, author, 200)
    assert [i["id"] for i in again["items"]] == [change["id"], child["id"]]


def test_an_included_item_its_type_refuses_is_named_and_nothing_is_created(
    client: TestClient, author: Headers, review_type: str
) -> None:
    # No example for the parameter: registration cannot check the schema, instantiation does.
    review = {
        "name": "review",
        "version": "1.0.0",
        "type": review_type,
        "parameters": {"subject": {"type": "string"}},
    }
    read = register(client, {**review, "item": {"title": "{params.subject}"}}, author)
    assert read["schemaChecked"] is False
    register(client, {**PCI, "includes": [{"template": "review", "parameters": {"subject": "x"}}]}, author)
    before = counts(client)
    response = client.post(
        f"{TEMPLATES}/change:pci/instantiate",
        json={"parameters": {"system": "s", "changeWindow": WINDOW}},
        headers=author,
    )
    assert response.status_code == 422
    assert [d["path"] for d in error(response)["details"]] == ["includes[0].item.title"]
    assert counts(client) == before


def test_an_inclusion_missing_a_required_parameter_is_refused(
    client: TestClient, author: Headers, review_type: str
) -> None:
    register(
        client,
        {
            "name": "review",
            "version": "1.0.0",
            "type": review_type,
            "parameters": {"subject": {"type": "string", "required": True}},
            "item": {"title": "Review {params.subject}"},
        },
        author,
    )
    response = client.post(TEMPLATES, json={**PCI, "includes": [{"template": "review"}]}, headers=author)
    assert response.status_code == 422
    assert [d["path"] for d in error(response)["details"]] == ["includes[0].parameters.subject"]


def test_an_inclusion_whose_type_cannot_sit_under_this_one_is_refused(client: TestClient, author: Headers) -> None:
    body = {"name": "t", "version": "1.0.0", "type": "task", "item": {"title": "a task", "description": "d"}}
    register(client, body, author)
    response = client.post(TEMPLATES, json={**PCI, "includes": [{"template": "t"}]}, headers=author)
    assert response.status_code == 422
    assert [d["path"] for d in error(response)["details"]] == ["includes[0].template"]


def test_a_changed_type_under_extends_is_refused(client: TestClient, author: Headers) -> None:
    register(client, PCI, author)
    response = client.post(
        TEMPLATES, json={"name": "x", "version": "1.0.0", "extends": "change:pci", "type": "task"}, headers=author
    )
    assert response.status_code == 422
    assert [d["path"] for d in error(response)["details"]] == ["type"]


def test_an_instantiated_item_is_held_by_its_templates_policy_gate(
    client: TestClient, author: Headers, token: TokenFactory
) -> None:
    # The blueprint names no policy; the template's goes into the payload.
    item = {**PCI["item"], "payload": {k: v for k, v in PCI["item"]["payload"].items() if k != "approvalPolicyId"}}
    register(client, {**PCI, "item": item}, author)
    done = instantiate(client, "change:pci", {"parameters": {"system": "s", "changeWindow": WINDOW}}, author)
    [change] = done["items"]
    assert change["payload"]["approvalPolicyId"] == "policy-change-pci-v1"
    gate = client.get(f"/api/v1/work-items/{change['id']}/gate", headers=author)
    assert gate.status_code == 200, gate.text
    assert "policy-change-pci-v1" in gate.text
    # A blueprint naming another policy than the template's is refused.
    other = {
        **PCI,
        "version": "1.0.1",
        "item": {**PCI["item"], "payload": {**PCI["item"]["payload"], "approvalPolicyId": "x"}},
    }
    response = client.post(TEMPLATES, json=other, headers=author)
    assert response.status_code == 422
    assert "item.payload.approvalPolicyId" in [d["path"] for d in error(response)["details"]]


def test_each_tenant_has_its_own_catalog_and_shares_the_operators(client: TestClient, token: TokenFactory) -> None:
    scopes = ["templates:write", "work:read", "work:write"]
    operator = token("user:root", scopes=["admin"], tenant="*")
    assert client.post("/api/v1/policies", json=POLICY, headers=operator).status_code == 201
    acme = token("user:ann", scopes=scopes, tenant="acme")
    globex = token("user:bob", scopes=scopes, tenant="globex")
    register(client, PCI, acme)
    assert client.get(f"{TEMPLATES}/change:pci", headers=globex).status_code == 404
    response = client.post(f"{TEMPLATES}/change:pci/instantiate", json={"parameters": {}}, headers=globex)
    assert response.status_code == 404
    assert client.get(TEMPLATES, headers=globex).json() == []
    # A shared one reaches every tenant; acme's own of the same name comes first for acme.
    shared = register(client, {**PCI, "version": "3.0.0", "title": "shared"}, operator)
    assert shared["tenant"] == "*"
    assert client.get(f"{TEMPLATES}/change:pci", headers=globex).json()["title"] == "shared"
    assert client.get(f"{TEMPLATES}/change:pci", headers=acme).json()["title"] == "PCI change request"
    done = instantiate(client, "change:pci", {"parameters": {"system": "s", "changeWindow": WINDOW}}, globex)
    assert done["templateId"] == "tpl:change:pci:3.0.0" and done["items"][0]["tenant"] == "globex"


def test_registering_needs_the_templates_scope(client: TestClient, token: TokenFactory, author: Headers) -> None:
    worker = token("user:carl", scopes=["work:read", "work:write"])
    assert client.post(TEMPLATES, json=PCI, headers=worker).status_code == 403


def test_a_workflow_starts_a_saga_with_the_new_item(client: TestClient, author: Headers) -> None:
    saga = {
        "name": "pci.rollout",
        "version": "1.0.0",
        "input_schema": {
            "type": "object",
            "required": ["item", "system"],
            "properties": {"item": {"type": "string"}, "system": {"type": "string"}},
        },
        "steps": [{"name": "deploy", "capability": "deploy", "handler": "deploy"}],
    }
    assert client.post("/api/v1/templates", json=saga, headers=author).status_code == 201
    body = {**PCI, "workflow": {"template": "pci.rollout", "input": {"item": "{item.id}", "system": "{params.system}"}}}
    register(client, body, author)
    params = {"parameters": {"system": "ledger", "changeWindow": WINDOW}, "idempotence_key": "wf-1"}
    done = instantiate(client, "change:pci", params, author)
    assert done["sagaId"]
    read = client.get(f"/api/v1/sagas/{done['sagaId']}", headers=author).json()
    assert read["input"] == {"item": done["items"][0]["id"], "system": "ledger"}
    again = instantiate(client, "change:pci", params, author, status=200)
    assert again["sagaId"] == done["sagaId"]


def test_the_catalog_examples_register_checked_and_instantiate_with_their_examples(
    client: TestClient, author: Headers, token: TokenFactory
) -> None:
    operator = token("user:root", scopes=["admin"], tenant="*")
    for policy in sorted((EXAMPLES.parent / "policies").glob("*.json")):
        response = client.post("/api/v1/policies", content=policy.read_bytes(), headers={**operator, **JSON})
        assert response.status_code in (200, 201), response.text
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) >= 3, EXAMPLES
    for path in paths:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
        read = register(client, body, author)
        assert read["schemaChecked"] is True, path.name  # every parameter it uses has a default or an example
        params = {name: spec["example"] for name, spec in body["parameters"].items() if "example" in spec}
        done = instantiate(client, body["name"], {"parameters": params}, author)
        assert [i["type"] for i in done["items"]] == [body["type"]], path.name


def test_an_object_parameter_inside_a_longer_string_is_a_422_naming_the_item(
    client: TestClient, author: Headers
) -> None:
    body = {
        "name": "t1",
        "version": "1.0.0",
        "type": "task",
        "parameters": {"o": {"type": "object", "example": {"a": 1}}},
        "item": {"title": "x {params.o}", "description": "d"},
    }
    before = counts(client)
    response = client.post(TEMPLATES, json=body, headers=author)
    assert response.status_code == 422, response.text
    assert [d["path"] for d in error(response)["details"]] == ["item"]
    assert counts(client) == before


def test_a_compensation_plan_in_a_blueprint_is_checked_when_instantiated(client: TestClient, author: Headers) -> None:
    plan = {"steps": [{"action_id": "no_such_handler", "on": "any_failure", "target_step": "*"}]}
    body = {
        "name": "t2",
        "version": "1.0.0",
        "type": "task",
        "item": {"title": "t", "description": "d", "compensation": plan},
    }
    register(client, body, author)
    before = counts(client)
    response = client.post(f"{TEMPLATES}/t2/instantiate", json={"parameters": {}}, headers=author)
    assert response.status_code == 422, response.text
    assert [d["path"] for d in error(response)["details"]] == ["item.compensation.steps.0.action_id"]
    assert counts(client) == before


def test_an_operators_template_includes_the_operators_pin_not_a_tenants_namesake(
    client: TestClient, token: TokenFactory
) -> None:
    operator = token("user:root", scopes=["admin"], tenant="*")
    acme = token("user:ann", scopes=["templates:write", "work:read", "work:write"], tenant="acme")
    sub = {"name": "sub", "version": "1.0.0", "type": "task", "item": {"title": "shared sub", "description": "d"}}
    register(client, sub, operator)
    epic = {
        "name": "main",
        "version": "1.0.0",
        "type": "epic",
        "item": {"title": "main"},
        "includes": [{"template": "sub"}],
    }
    register(client, epic, operator)
    register(client, {**sub, "item": {"title": "acme sub", "description": "d"}}, acme)
    done = instantiate(client, "main", {"parameters": {}}, acme)
    assert [i["title"] for i in done["items"]] == ["main", "shared sub"]
