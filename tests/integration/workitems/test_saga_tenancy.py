"""Sagas, templates and idempotency keys belong to a tenant: nothing one tenant registers or
submits reaches another's sagas, on SQLite and PostgreSQL, through the HTTP API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error

SAGA_SCOPES = ["sagas:read", "sagas:write", "templates:write", "work:read"]


def order_template(name: str, version: str, title: str, **item: Any) -> dict[str, Any]:
    """A template whose first step waits on a work item (opened as the saga starts)."""
    return {
        "name": name,
        "version": version,
        "steps": [
            {
                "name": "review",
                "kind": "work_item",
                "work_item": {
                    "type": "task",
                    "title": title,
                    "description": "look at {input.order_id}",
                    "offer": {"type": "human", "scope": "work:claim"},
                    **item,
                },
            }
        ],
    }


@pytest.fixture
def acme(token: TokenFactory) -> Headers:
    return token("user:acme-ops", scopes=SAGA_SCOPES, tenant="acme")


@pytest.fixture
def beta(token: TokenFactory) -> Headers:
    return token("user:beta-ops", scopes=SAGA_SCOPES, tenant="beta")


@pytest.fixture
def operator(token: TokenFactory) -> Headers:
    return token("user:operator", scopes=SAGA_SCOPES, tenant="*")


def name() -> str:
    return f"shop.order.{uuid.uuid4().hex[:8]}"


def items_of(client: TestClient, headers: Headers, saga_id: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/work-items", params={"saga_id": saga_id}, headers=headers)
    assert response.status_code == 200, response.json()
    return list(response.json()["items"])


def test_another_tenants_newer_version_does_not_reach_a_tenants_sagas(
    client: TestClient, acme: Headers, beta: Headers
) -> None:
    template = name()
    assert (
        client.post(
            "/api/v1/templates", json=order_template(template, "1.0.0", "acme {input.order_id}"), headers=acme
        ).status_code
        == 201
    )
    # beta's own template of that name, a higher version: beta's, and no one else's.
    hijack = order_template(template, "1.0.1", "beta drives {input.order_id}")
    assert client.post("/api/v1/templates", json=hijack, headers=beta).status_code == 201

    response = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "A-1"}}, headers=acme)
    assert response.status_code == 202, response.json()
    saga = response.json()
    assert (saga["tenant"], saga["template_version"]) == ("acme", "1.0.0")
    (item,) = items_of(client, acme, saga["id"])
    assert item["tenant"] == "acme" and item["title"] == "acme A-1"
    assert items_of(client, beta, saga["id"]) == []
    assert client.get(f"/api/v1/sagas/{saga['id']}", headers=beta).status_code == 404


def test_a_shared_template_runs_for_every_tenant_and_no_tenant_adds_versions(
    client: TestClient, acme: Headers, beta: Headers, operator: Headers
) -> None:
    template = name()
    shared = order_template(template, "1.0.0", "review {input.order_id}")
    response = client.post("/api/v1/templates", json=shared, headers=operator)
    assert response.status_code == 201 and response.json()["tenant"] == "*"
    before = counts(client)
    response = client.post("/api/v1/templates", json=order_template(template, "1.0.1", "beta"), headers=beta)
    assert response.status_code == 409 and "shared template" in error(response)["message"]
    assert counts(client) == before

    for headers, tenant in ((acme, "acme"), (beta, "beta")):
        response = client.post(
            "/api/v1/sagas", json={"template": template, "input": {"order_id": tenant}}, headers=headers
        )
        assert response.status_code == 202, response.json()
        saga = response.json()
        assert (saga["tenant"], saga["template_version"]) == (tenant, "1.0.0")
        (item,) = items_of(client, headers, saga["id"])
        assert item["tenant"] == tenant  # a shared template's items open in the saga's tenant
    listed = client.get("/api/v1/templates", headers=acme).json()
    assert [(t["tenant"], t["name"]) for t in listed if t["name"] == template] == [("*", template)]


@pytest.mark.parametrize("owner", ["beta", "*"])
def test_a_template_whose_work_item_names_another_tenant_is_refused(
    client: TestClient, token: TokenFactory, owner: str
) -> None:
    headers = token(f"user:{owner.strip('*') or 'op'}", scopes=SAGA_SCOPES, tenant=owner)
    before = counts(client)
    response = client.post(
        "/api/v1/templates", json=order_template(name(), "1.0.0", "t", tenant="acme"), headers=headers
    )
    assert response.status_code == 422
    assert [d["path"] for d in error(response)["details"]] == ["steps.0.work_item.tenant"]
    assert counts(client) == before


def test_a_template_may_name_its_own_tenant_for_its_items(client: TestClient, beta: Headers) -> None:
    response = client.post("/api/v1/templates", json=order_template(name(), "1.0.0", "t", tenant="beta"), headers=beta)
    assert response.status_code == 201, response.json()


def test_sagas_are_read_and_listed_per_tenant(
    client: TestClient, acme: Headers, beta: Headers, operator: Headers
) -> None:
    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=operator)
    ids = {}
    for headers, tenant in ((acme, "acme"), (beta, "beta")):
        response = client.post(
            "/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=headers
        )
        ids[tenant] = response.json()["id"]
    for headers, tenant, other in ((acme, "acme", "beta"), (beta, "beta", "acme")):
        assert client.get(f"/api/v1/sagas/{ids[tenant]}", headers=headers).status_code == 200
        missing = client.get(f"/api/v1/sagas/{ids[other]}", headers=headers)
        assert missing.status_code == 404 and error(missing)["code"] == "not_found"
        listed = [s["id"] for s in client.get("/api/v1/sagas", headers=headers).json()["items"]]
        assert listed == [ids[tenant]]
    everyone = {s["id"] for s in client.get("/api/v1/sagas", headers=operator).json()["items"]}
    assert everyone == set(ids.values())


def test_idempotency_keys_are_a_tenants_own(
    client: TestClient, acme: Headers, beta: Headers, operator: Headers
) -> None:
    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=operator)
    key = {"Idempotency-Key": "order-A-1"}
    taken = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "beta"}}, headers=beta | key)
    assert taken.status_code == 202
    # beta took the key first: acme's submit is a saga of its own, not a 409 naming beta's saga.
    mine = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "A-1"}}, headers=acme | key)
    assert mine.status_code == 202, mine.json()
    assert mine.json()["id"] != taken.json()["id"] and taken.json()["id"] not in mine.text
    again = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "A-1"}}, headers=acme | key)
    assert again.status_code == 200 and again.json()["id"] == mine.json()["id"]


def test_a_tenant_token_cannot_submit_for_another_tenant(client: TestClient, acme: Headers, operator: Headers) -> None:
    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=operator)
    before = counts(client)
    body = {"template": template, "input": {"order_id": "x"}, "tenant": "beta"}
    response = client.post("/api/v1/sagas", json=body, headers=acme)
    assert response.status_code == 403 and error(response)["code"] == "forbidden"
    assert counts(client) == before
    # An operator may run it for a tenant; its items open there.
    response = client.post("/api/v1/sagas", json=body, headers=operator)
    assert response.status_code == 202 and response.json()["tenant"] == "beta"


def test_an_operators_saga_of_no_tenant_opens_no_work_item(client: TestClient, operator: Headers) -> None:
    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=operator)
    response = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=operator)
    assert response.status_code == 202
    saga = response.json()
    assert saga["tenant"] == "*" and saga["state"] == "compensated"
    assert "submit it for a tenant" in saga["steps"][0]["error"]


ROUTES = [
    ("post", "/api/v1/sagas", "sagas:write"),
    ("get", "/api/v1/sagas", "sagas:read"),
    ("get", "/api/v1/sagas/{saga}", "sagas:read"),
    ("post", "/api/v1/templates", "templates:write"),
    ("get", "/api/v1/templates", "sagas:read"),
    ("get", "/api/v1/templates/{template}", "sagas:read"),
    ("get", "/api/v1/templates/{template}/1.0.0", "sagas:read"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_saga_and_template_routes_hold_for_each_kind_of_caller(
    client: TestClient, token: TokenFactory, acme: Headers, method: str, path: str, scope: str
) -> None:
    template = name()
    body = order_template(template, "1.0.0", "t")
    client.post("/api/v1/templates", json=body, headers=acme)
    saga = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=acme).json()
    url = path.format(saga=saga["id"], template=template)
    payload: dict[str, Any] | None = None
    if method == "post":
        payload = (
            {"template": template, "input": {"order_id": "y"}} if "sagas" in path else {**body, "version": "1.0.1"}
        )

    def call(headers: Headers) -> Any:
        return client.request(method, url, json=payload, headers=headers)

    assert call({}).status_code == 401
    wrong = token("user:narrow", scopes=["work:read"], tenant="acme")
    assert call(wrong).status_code == 403
    other = call(token("user:beta", scopes=SAGA_SCOPES, tenant="beta"))
    if "{" in path:
        assert other.status_code == 404  # another tenant's saga or template: not there
    elif method == "get":
        assert other.status_code == 200 and saga["id"] not in other.text and template not in other.text
    assert call(acme).status_code in (200, 201, 202)


def test_a_sagas_webhook_events_go_to_its_own_tenants_webhooks(
    client: TestClient, token: TokenFactory, acme: Headers, operator: Headers
) -> None:
    hooks = {}
    for tenant in ("acme", "beta", "*"):
        headers = token(f"user:hooks-{tenant.strip('*') or 'ops'}", scopes=["webhooks"], tenant=tenant)
        body = {"url": f"https://{tenant.strip('*') or 'ops'}.example/hooks", "events": ["saga.compensated"]}
        response = client.post("/api/v1/webhooks", json=body, headers=headers)
        assert response.status_code == 201, response.json()
        hooks[tenant] = (headers, response.json()["id"])
    template = name()
    # The item's payload needs an input field the saga lacks: the step fails as it starts and
    # the saga ends compensated in the submit's own transaction.
    broken = order_template(template, "1.0.0", "t", payload={"missing": "{input.nowhere}"})
    client.post("/api/v1/templates", json=broken, headers=acme)
    response = client.post("/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=acme)
    assert response.status_code == 202 and response.json()["state"] == "compensated"

    def delivered(tenant: str) -> list[str]:
        headers, hook_id = hooks[tenant]
        rows = client.get("/api/v1/webhooks/deliveries", params={"webhook_id": hook_id}, headers=headers).json()
        return [d["event"] for d in rows]

    assert delivered("acme") == ["saga.compensated"]
    assert delivered("*") == ["saga.compensated"]  # operators hear every tenant
    assert delivered("beta") == []


def test_a_tenant_reads_which_worker_ran_its_step_but_not_its_host(
    client: TestClient, acme: Headers, operator: Headers
) -> None:
    from models.enums import Outcome, Phase
    from models.tables import StepAttempt
    from tests.integration.workitems.conftest import sessions

    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=acme)
    saga_id = client.post(
        "/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=acme
    ).json()["id"]
    with sessions(client).begin() as session:
        session.add(
            StepAttempt(
                saga_id=saga_id,
                step_index=0,
                step_name="review",
                phase=Phase.forward,
                attempt=2,
                outcome=Outcome.succeeded,
                worker="payments-1@db-host-7",
            )
        )
    workers = {
        who: [
            a["worker"]
            for a in client.get(f"/api/v1/sagas/{saga_id}", headers=h).json()["attempts"]
            if a["attempt"] == 2
        ]
        for who, h in (("acme", acme), ("operator", operator))
    }
    assert workers == {"acme": ["payments-1"], "operator": ["payments-1@db-host-7"]}


def test_a_tenant_reading_its_saga_does_not_see_the_operators_remediation_items(
    client: TestClient, acme: Headers, operator: Headers
) -> None:
    from models.base import utcnow
    from models.tables import SagaRun
    from orchestrator.work.links import open_remediation
    from tests.integration.workitems.conftest import sessions

    template = name()
    client.post("/api/v1/templates", json=order_template(template, "1.0.0", "t"), headers=acme)
    saga_id = client.post(
        "/api/v1/sagas", json={"template": template, "input": {"order_id": "x"}}, headers=acme
    ).json()["id"]
    with sessions(client).begin() as session:
        saga = session.get(SagaRun, saga_id)
        assert saga is not None
        remediation = open_remediation(session, saga, "review", 1, "it broke", "ops", utcnow())

    def items(headers: Headers) -> set[str]:
        return {i["id"] for i in client.get(f"/api/v1/sagas/{saga_id}", headers=headers).json()["work_items"]}

    assert remediation in items(operator)
    assert remediation not in items(acme) and len(items(acme)) == 1  # its own review item only
