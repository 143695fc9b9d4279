"""Creating, reading, listing, updating and deleting work items; ids and idempotence under
concurrency."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models.principal import Principal, PrincipalType
from models.work_api import WorkItemCreate
from models.work_tables import WorkItem
from orchestrator.work.items import create_item
from tests.integration.workitems.conftest import TokenFactory, error, sessions, task

ID_FORMAT = re.compile(r"^WI-ACME-TASK-\d{8}-[0-9A-F]{10}$")
WRITER = Principal(type=PrincipalType.user, id="w", tenant="acme", scopes=frozenset({"work:read", "work:write"}))


def test_a_created_item_has_the_specs_fields_and_a_readable_id(client: TestClient, token: TokenFactory) -> None:
    ann = token("user:ann")
    created = client.post(
        "/api/v1/work-items",
        json=task(
            code="OPS-1",
            priority=80,
            labels=["db", "urgent", "db"],
            assignee={"type": "agent", "id": "sum-1"},
            payload={"doc": "x"},
            metadata={"source": "pager"},
            due_at="2026-12-01T09:00:00Z",
        ),
        headers=ann,
    )
    assert created.status_code == 201
    item = created.json()
    assert ID_FORMAT.match(item["id"]), item["id"]
    assert item["code"] == "OPS-1" and item["tenant"] == "acme" and item["priority"] == 80
    assert item["labels"] == ["db", "urgent"]
    assert item["reporter"] == {"type": "user", "id": "ann"} and item["created_by"] == "user:ann"
    assert item["assignee"] == {"type": "agent", "id": "sum-1"}
    assert item["status"] == "todo" and item["lifecycle"] == "work" and item["version"] == 1
    assert item["due_at"].startswith("2026-12-01T09:00:00")
    assert client.get(f"/api/v1/work-items/{item['id']}", headers=ann).json() == item


def test_one_idempotence_key_makes_one_item_under_concurrency(client: TestClient) -> None:
    body = WorkItemCreate.model_validate(task(idempotence_key="upstream-42"))
    factory = sessions(client)
    barrier = threading.Barrier(20)

    def create(_: int) -> tuple[str, bool]:
        barrier.wait()
        item, created = create_item(factory, WRITER, body, max_payload_bytes=1 << 20)
        return item.id, created

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    assert len({item_id for item_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WorkItem)) == 1


def test_ids_stay_unique_under_concurrent_creates(client: TestClient) -> None:
    body = WorkItemCreate.model_validate(task())
    factory = sessions(client)

    def create(_: int) -> str:
        return create_item(factory, WRITER, body, max_payload_bytes=1 << 20)[0].id

    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(create, range(200)))
    assert len(set(ids)) == 200 and all(ID_FORMAT.match(i) for i in ids)


def test_the_id_of_a_keyed_item_is_deterministic(client: TestClient, token: TokenFactory) -> None:
    ann = token("user:ann")
    first = client.post("/api/v1/work-items", json=task(), headers={**ann, "Idempotency-Key": "k-1"}).json()
    again = client.post("/api/v1/work-items", json=task(), headers={**ann, "Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    # The same key in another tenant is another item.
    other = client.post(
        "/api/v1/work-items", json=task(), headers={**token("user:x", tenant="globex"), "Idempotency-Key": "k-1"}
    )
    assert other.status_code == 201 and other.json()["id"] != first["id"]


def test_list_filters_and_pages(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm")
    epic = client.post("/api/v1/work-items", json={"type": "epic", "title": "launch"}, headers=pm).json()["id"]
    made = []
    for n in range(5):
        body = task(
            title=f"t{n}",
            parent_id=epic,
            labels=["even"] if n % 2 == 0 else ["odd"],
            assignee={"type": "user", "id": "ann" if n < 2 else "bo"},
        )
        made.append(client.post("/api/v1/work-items", json=body, headers=pm).json()["id"])
    client.post(f"/api/v1/work-items/{made[0]}/transition", json={"to": "in_progress"}, headers=pm)

    def ids(**params: str) -> list[str]:
        response = client.get("/api/v1/work-items", params=params, headers=pm)
        assert response.status_code == 200, response.json()
        return [i["id"] for i in response.json()["items"]]

    assert ids(type="task") == made[::-1]
    assert ids(type="epic") == [epic]
    assert ids(status="in_progress") == [made[0]]
    assert ids(label="even") == [made[4], made[2], made[0]]
    assert ids(assignee="user:ann") == [made[1], made[0]]
    assert ids(reporter="user:pm", type="task", label="odd") == [made[3], made[1]]
    assert ids(parent_id=epic) == made[::-1]
    page = client.get("/api/v1/work-items", params={"type": "task", "limit": 2}, headers=pm).json()
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = client.get(
            "/api/v1/work-items", params={"type": "task", "limit": 2, "cursor": page["next_cursor"]}, headers=pm
        ).json()
        seen += [i["id"] for i in page["items"]]
    assert seen == made[::-1]
    bad = client.get("/api/v1/work-items", params={"assignee": "ann"}, headers=pm)
    assert bad.status_code == 422 and error(bad)["details"][0]["path"] == "assignee"


def test_tenants_list_only_their_own_and_an_operator_chooses(client: TestClient, token: TokenFactory) -> None:
    acme, globex = token("user:a"), token("user:g", tenant="globex")
    mine = client.post("/api/v1/work-items", json=task(), headers=acme).json()["id"]
    theirs = client.post("/api/v1/work-items", json=task(), headers=globex).json()["id"]
    assert [i["id"] for i in client.get("/api/v1/work-items", headers=acme).json()["items"]] == [mine]
    asked = client.get("/api/v1/work-items", params={"tenant": "globex"}, headers=acme)
    assert asked.status_code == 403
    operator = token("user:op", tenant="*", scopes=["admin"])
    everyone = {i["id"] for i in client.get("/api/v1/work-items", headers=operator).json()["items"]}
    assert everyone == {mine, theirs}
    only = client.get("/api/v1/work-items", params={"tenant": "globex"}, headers=operator).json()["items"]
    assert [i["id"] for i in only] == [theirs]
    nameless = client.post("/api/v1/work-items", json=task(), headers=operator)
    assert nameless.status_code == 422 and error(nameless)["details"][0]["path"] == "tenant"
    assert client.post("/api/v1/work-items", json=task(tenant="initech"), headers=operator).status_code == 201


def test_update_changes_fields_labels_and_dependencies_and_audits_assignment(
    client: TestClient, token: TokenFactory
) -> None:
    pm = token("user:pm")
    dep = client.post("/api/v1/work-items", json=task(), headers=pm).json()["id"]
    item = client.post("/api/v1/work-items", json=task(labels=["a"]), headers=pm).json()
    changed = client.patch(
        f"/api/v1/work-items/{item['id']}",
        json={
            "version": 1,
            "title": "new title",
            "labels": ["b", "c"],
            "dependencies": [dep],
            "assignee": {"type": "agent", "id": "bot"},
            "offer": {"type": "agent", "capability": "triage"},
        },
        headers=pm,
    )
    assert changed.status_code == 200, changed.json()
    body = changed.json()
    assert (body["title"], body["labels"], body["dependencies"], body["version"]) == ("new title", ["b", "c"], [dep], 2)
    assert body["offer"] == {"type": "agent", "capability": "triage"}
    unassigned = client.patch(f"/api/v1/work-items/{item['id']}", json={"assignee": None}, headers=pm).json()
    assert unassigned["assignee"] is None and unassigned["version"] == 3
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=pm).json()
    assigned = [e["details"] for e in history if e["action"] == "assigned"]
    assert assigned == [{"assignee": "agent:bot", "previous": None}, {"assignee": None, "previous": "agent:bot"}]
    stale = client.patch(f"/api/v1/work-items/{item['id']}", json={"title": "x"}, headers={**pm, "If-Match": "2"})
    assert stale.status_code == 409


def test_a_deleted_item_leaves_lists_and_queues_but_keeps_its_history(client: TestClient, token: TokenFactory) -> None:
    pm = token("user:pm")
    item_id = client.post("/api/v1/work-items", json=task(), headers=pm).json()["id"]
    assert client.delete(f"/api/v1/work-items/{item_id}", headers=pm).status_code == 204
    assert client.get(f"/api/v1/work-items/{item_id}", headers=pm).status_code == 404
    assert client.get("/api/v1/work-items", headers=pm).json()["items"] == []
    assert client.get("/api/v1/queues/available", headers=pm).json()["items"] == []
    assert client.delete(f"/api/v1/work-items/{item_id}", headers=pm).status_code == 404
    with sessions(client)() as session:
        row = session.get(WorkItem, item_id)
        assert row is not None and row.deleted_at is not None
