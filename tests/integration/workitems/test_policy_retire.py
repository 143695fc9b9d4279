"""Retiring a policy (DELETE /api/v1/policies/{id}), on SQLite and PostgreSQL: a new version that
gates nothing new (no item, edit, type or template may name it), refused while open items or a
type still name it, its versions readable, brought back by registering it again; a tenant's
retired override gives way to the operators' policy of the same id; tenants kept apart."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from orchestrator.work.gates import policies
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error
from tests.integration.workitems.test_policy_gates import POLICY, change, missing, register, to_review

URL = "/api/v1/policies/pci-change"


def officer(token: TokenFactory, tenant: str = "acme") -> Headers:
    return token(f"user:co-{tenant}", scopes=["policies:write", "policies:read"], tenant=tenant)


def test_a_retired_policy_gates_nothing_new_and_comes_back_when_registered_again(
    client: TestClient, token: TokenFactory
) -> None:
    register(client, token)
    co, alice = officer(token), token("user:alice")
    assert client.delete(URL, headers=co).status_code == 204
    assert client.delete(URL, headers=co).status_code == 204  # retiring it again adds nothing
    live = client.get(URL, headers=co).json()
    assert (live["version"], live["retired"]) == (2, True)
    old = client.get(f"{URL}?version=1", headers=co).json()
    assert (old["retired"], old["approvalSteps"][0]["role"]) == (False, "Security Officer")
    assert [(p["id"], p["retired"]) for p in client.get("/api/v1/policies", headers=co).json()["policies"]] == [
        ("pci-change", True)
    ]
    before = counts(client)
    refused = client.post("/api/v1/work-items", json=change(), headers=alice)
    assert refused.status_code == 422 and error(refused)["details"][0]["path"] == "payload.approvalPolicyId"
    assert counts(client) == before
    # Registered again (the same definition), it is live again: a new version.
    again = client.post("/api/v1/policies", json=POLICY, headers=co)
    assert again.status_code == 201 and (again.json()["version"], again.json()["retired"]) == (3, False)
    item = client.post("/api/v1/work-items", json=change(), headers=alice)
    assert item.status_code == 201, item.text
    to_review(client, alice, item.json()["id"])
    done = client.post(f"/api/v1/work-items/{item.json()['id']}/transition", json={"to": "done"}, headers=alice)
    assert ("approval", "approvalSteps.0") in missing(done)


def test_a_policy_open_items_or_a_type_name_is_not_retired(client: TestClient, token: TokenFactory) -> None:
    register(client, token)
    co, alice = officer(token), token("user:alice")
    item = client.post("/api/v1/work-items", json=change(), headers=alice).json()
    refused = client.delete(URL, headers=co)
    assert refused.status_code == 409, refused.text
    assert error(refused)["details"] == [{"path": "id", "message": f"1 open item(s) name it (first {item['id']})"}]
    assert client.get(URL, headers=co).json()["retired"] is False
    # Once the item is over, nothing holds it.
    for status in ("in_progress", "failed"):
        moved = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": status}, headers=alice)
        assert moved.status_code == 200, moved.text
    assert client.delete(URL, headers=co).status_code == 204
    # An operator's policy a type names stays until the type goes.
    root = token("user:root", scopes=["admin"], tenant="*")
    shared: dict[str, Any] = {**POLICY, "id": "vendor-change"}
    assert client.post("/api/v1/policies", json=shared, headers=root).status_code == 201
    kind = {"name": "vendor.change", "schema": {"type": "object"}, "approvalPolicyId": "vendor-change"}
    assert client.post("/api/v1/work-item-types", json=kind, headers=root).status_code == 201
    held = client.delete("/api/v1/policies/vendor-change", headers=root)
    assert held.status_code == 409 and "work-item type vendor.change names it" in held.text


def test_retiring_a_tenants_override_brings_back_the_operators_policy(client: TestClient, token: TokenFactory) -> None:
    root = token("user:root", scopes=["admin"], tenant="*")
    assert client.post("/api/v1/policies", json={**POLICY, "checks": []}, headers=root).status_code == 201
    co, alice = officer(token), token("user:alice")
    # acme's own, stricter: it wins while live.
    assert client.post("/api/v1/policies", json=POLICY, headers=co).status_code == 201
    # A tenant's token may not retire the operators' policy, nor another tenant's.
    assert client.delete(URL, headers=officer(token, "globex")).status_code == 403
    assert client.delete(URL, headers=co).status_code == 204
    assert client.get(URL, headers=co).json()["tenant"] == "acme"  # its own retired version, readable
    item = client.post("/api/v1/work-items", json=change(), headers=alice)
    assert item.status_code == 201, item.text  # the operators' is live for acme
    to_review(client, alice, item.json()["id"])
    done = client.post(f"/api/v1/work-items/{item.json()['id']}/transition", json={"to": "done"}, headers=alice)
    assert missing(done) == [("approval", "approvalSteps.0"), ("approval", "approvalSteps.1")]  # no pci evidence
    assert client.delete("/api/v1/policies/no-such-policy", headers=co).status_code == 404
    # A scope it lacks.
    assert client.delete(URL, headers=token("user:bob")).status_code == 403


class Meanwhile:
    """While a retire holds its lock and has counted the policy's users, ``request`` runs in
    another thread, given half a second to get as far as it can (on PostgreSQL it waits for the
    retire's lock; SQLite runs one writer at a time anyway). :meth:`answer`: what it answered."""

    def __init__(self, monkeypatch: Any, request: Callable[[], Any]):
        self.answers: list[Any] = []
        self.thread = threading.Thread(target=lambda: self.answers.append(request()))
        real = policies._users

        def users(session: Any, owner: str, policy_id: str) -> list[str]:
            found = real(session, owner, policy_id)
            self.thread.start()
            self.thread.join(0.5)
            return found

        monkeypatch.setattr(policies, "_users", users)

    def answer(self) -> Any:
        self.thread.join(30)
        [answer] = self.answers
        return answer


def test_an_item_created_while_its_policy_is_retired_is_refused(
    client: TestClient, token: TokenFactory, monkeypatch: Any
) -> None:
    register(client, token)
    co, alice = officer(token), token("user:alice")
    meanwhile = Meanwhile(monkeypatch, lambda: client.post("/api/v1/work-items", json=change(), headers=alice))
    assert client.delete(URL, headers=co).status_code == 204
    created = meanwhile.answer()
    assert created.status_code == 422, created.text
    assert error(created)["details"][0]["path"] == "payload.approvalPolicyId"


def test_a_type_registered_while_its_policy_is_retired_is_refused(
    client: TestClient, token: TokenFactory, monkeypatch: Any
) -> None:
    root = token("user:root", scopes=["admin"], tenant="*")
    assert client.post("/api/v1/policies", json=POLICY, headers=root).status_code == 201
    kind = {"name": "vendor.change", "schema": {"type": "object"}, "approvalPolicyId": "pci-change"}
    meanwhile = Meanwhile(monkeypatch, lambda: client.post("/api/v1/work-item-types", json=kind, headers=root))
    assert client.delete(URL, headers=root).status_code == 204
    registered = meanwhile.answer()
    assert registered.status_code == 422 and error(registered)["details"][0]["path"] == "approvalPolicyId"


def test_two_retires_at_once_both_answer_204(client: TestClient, token: TokenFactory, monkeypatch: Any) -> None:
    register(client, token)
    co = officer(token)
    meanwhile = Meanwhile(monkeypatch, lambda: client.delete(URL, headers=co))
    assert client.delete(URL, headers=co).status_code == 204
    second = meanwhile.answer()
    assert second.status_code == 204, second.text
    assert client.get(URL, headers=co).json()["version"] == 2  # retired once


def test_an_operator_naming_a_tenant_without_the_policy_gets_a_404(client: TestClient, token: TokenFactory) -> None:
    root = token("user:root", scopes=["admin"], tenant="*")
    assert client.post("/api/v1/policies", json=POLICY, headers=root).status_code == 201
    missing_there = client.delete(f"{URL}?tenant=acme", headers=root)
    assert missing_there.status_code == 404 and "acme" in error(missing_there)["message"]
    assert client.delete(URL, headers=root).status_code == 204


def test_a_fan_out_with_one_item_naming_a_retired_policy_opens_none(client: TestClient, token: TokenFactory) -> None:
    co = officer(token)
    for policy_id in ("p-live", "p-old"):
        assert client.post("/api/v1/policies", json={**POLICY, "id": policy_id}, headers=co).status_code == 201
    assert client.delete("/api/v1/policies/p-old", headers=co).status_code == 204
    ops = token("user:ops", scopes=["sagas:read", "sagas:write", "templates:write", "work:read"])
    review = {
        "type": "task",
        "title": "review under {each}",
        "description": "x",
        "offer": {"type": "human", "scope": "work:claim"},
        "payload": {"approvalPolicyId": "{each}"},
    }
    template = {
        "name": "fan.review",
        "version": "1.0.0",
        "steps": [{"name": "review", "kind": "work_item", "for_each": "{input.policies}", "work_item": review}],
    }
    assert client.post("/api/v1/templates", json=template, headers=ops).status_code == 201
    saga = client.post(
        "/api/v1/sagas", json={"template": "fan.review", "input": {"policies": ["p-live", "p-old"]}}, headers=ops
    )
    assert saga.status_code in (201, 202), saga.text
    assert "p-old" in str(saga.json()["steps"][0]["error"])
    assert client.get("/api/v1/work-items", headers=ops).json()["items"] == []
