"""Bad input to the work-item API: a clear 4xx in the one error shape, naming every failing
field, and nothing written (the row count of every table is the same before and after, and the
item a refused call addressed is unchanged)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, task

ITEMS = "/api/v1/work-items"
TYPES = "/api/v1/work-item-types"
MISSING_ID = "WI-ACME-TASK-20990101-0000000000"


@pytest.fixture
def pm(token: TokenFactory) -> Headers:
    return token("user:pm", scopes=["work:read", "work:write", "work:claim", "types:write"])


@pytest.fixture
def op(token: TokenFactory) -> Headers:
    """An operator: types are registered with an all-tenant token."""
    return token("user:op", scopes=["work:read", "types:write"], tenant="*")


def refused(
    client: TestClient,
    method: str,
    path: str,
    status: int,
    code: str,
    headers: Headers,
    *,
    body: Any = None,
    content: bytes | None = None,
    extra_headers: Headers | None = None,
) -> dict[str, Any]:
    """Send a request that must fail with ``status`` / ``code`` and write nothing; its error."""
    headers = {**headers, **(extra_headers or {})}
    item_id = path.removeprefix(f"{ITEMS}/").split("/")[0] if path.startswith(f"{ITEMS}/") else None
    state = client.get(f"{ITEMS}/{item_id}", headers=headers).json() if item_id else None
    before = counts(client)
    if content is not None:
        response = client.request(
            method, path, content=content, headers={**headers, "Content-Type": "application/json"}
        )
    elif body is not None:
        response = client.request(method, path, json=body, headers=headers)
    else:
        response = client.request(method, path, headers=headers)
    assert response.status_code == status, response.text
    err = error(response)
    assert err["code"] == code, err
    assert counts(client) == before, "a refused request wrote something"
    if item_id:
        assert client.get(f"{ITEMS}/{item_id}", headers=headers).json() == state, "a refused request changed the item"
    return err


def paths(err: dict[str, Any]) -> list[str]:
    return [d["path"] for d in err["details"]]


def create(client: TestClient, headers: Headers, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(ITEMS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


# Types and their schemas.

SCHEMA_VIOLATIONS: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"type": "investigation", "title": "why is it slow"},
        ["payload.scope", "payload.successCriteria", "payload.evidenceRequirements"],
    ),
    (
        {"type": "experiment", "title": "bigger cache", "payload": {"hypothesis": "faster"}},
        ["payload.metrics", "payload.successCriteria", "payload.rollbackPlan"],
    ),
    (
        {"type": "change", "title": "upgrade", "payload": {"changeWindow": {"start": 5}}},
        ["payload.approvalPolicyId", "payload.rollbackPlan", "payload.changeWindow.end", "payload.changeWindow.start"],
    ),
    ({"type": "job", "title": "nightly", "payload": {"tasks": []}}, ["payload"]),
    ({"type": "task", "title": "nothing to go on"}, ["(root)"]),
]


def test_an_unknown_type_or_a_schema_violation_is_a_422_naming_every_failing_field(
    client: TestClient, pm: Headers
) -> None:
    err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body={"type": "widget", "title": "x"})
    assert "'widget'" in err["message"]
    assert paths(err) == ["type"] and "known types: change, epic" in err["details"][0]["message"]

    # Every field that breaks the type's schema, in the details and in the message.
    for body, expected in SCHEMA_VIOLATIONS:
        err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body=body)
        assert sorted(paths(err)) == sorted(expected), err
        assert err["message"].startswith(f"not a valid {body['type']}: ")
        for detail in err["details"]:
            assert f"{detail['path']}: {detail['message']}" in err["message"]

    # An update is held to the schema too.
    payload = {"scope": "db", "successCriteria": "p99 < 50ms", "evidenceRequirements": ["traces"]}
    item = create(client, pm, {"type": "investigation", "title": "slow", "payload": payload})
    err = refused(client, "PATCH", f"{ITEMS}/{item['id']}", 422, "invalid_input", pm, body={"payload": {"scope": 1}})
    assert sorted(paths(err)) == ["payload.evidenceRequirements", "payload.successCriteria"]


# Transitions.


def test_bad_transitions_are_refused_with_what_is_allowed(client: TestClient, pm: Headers) -> None:
    item = create(client, pm, task())
    err = refused(client, "POST", f"{ITEMS}/{item['id']}/transition", 422, "invalid_input", pm, body={"to": "finished"})
    assert paths(err) == ["to"] and "'finished' is not a status of the work lifecycle" == err["message"]
    assert err["details"][0]["message"] == "statuses: todo, in_progress, blocked, cancelled, review, done, rolled_back"

    # A move the lifecycle does not allow: a 409 naming the allowed next statuses.
    item = create(client, pm, task())
    path = f"{ITEMS}/{item['id']}/transition"
    err = refused(client, "POST", path, 409, "conflict", pm, body={"to": "done"})
    assert err["message"].endswith("from todo to done; allowed next: in_progress, blocked, cancelled")
    assert err["details"] == [
        {
            "path": "status",
            "message": "allowed next: in_progress, blocked, cancelled",
            "from": "todo",
            "to": "done",
            "allowed": ["in_progress", "blocked", "cancelled"],
        }
    ]
    assert client.post(path, json={"to": "cancelled"}, headers=pm).status_code == 200
    final = refused(client, "POST", path, 409, "conflict", pm, body={"to": "todo"})
    assert final["message"].endswith("allowed next: none (the status is terminal)")

    # A stale version.
    item = create(client, pm, task())
    err = refused(
        client, "POST", f"{ITEMS}/{item['id']}/transition", 409, "conflict", pm, body={"to": "blocked", "version": 7}
    )
    assert err["details"] == [{"path": "version", "message": "current version is 1"}]


# Dependencies.


def test_cycles_self_and_unknown_dependencies_are_refused(client: TestClient, pm: Headers) -> None:
    b = create(client, pm, task("b"))
    a = create(client, pm, task("a", dependencies=[b["id"]]))
    err = refused(client, "PATCH", f"{ITEMS}/{b['id']}", 422, "invalid_input", pm, body={"dependencies": [a["id"]]})
    assert "cycle" in err["message"] and err["details"] == [
        {"path": "dependencies.0", "message": "makes a dependency cycle"}
    ]
    # A longer way round, named at its index: c -> a -> b, then b -> c.
    c = create(client, pm, task("c", dependencies=[a["id"]]))
    other = create(client, pm, task("unrelated"))
    err = refused(
        client, "PATCH", f"{ITEMS}/{b['id']}", 422, "invalid_input", pm, body={"dependencies": [other["id"], c["id"]]}
    )
    assert "cycle" in err["message"] and paths(err) == ["dependencies.1"]
    assert client.get(f"{ITEMS}/{b['id']}", headers=pm).json()["dependencies"] == []

    # An item cannot depend on itself.
    a = create(client, pm, task())
    err = refused(client, "PATCH", f"{ITEMS}/{a['id']}", 422, "invalid_input", pm, body={"dependencies": [a["id"]]})
    assert err["details"] == [{"path": "dependencies.0", "message": "is the item itself"}]

    # An unknown dependency is named at its index.
    known = create(client, pm, task())
    err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body=task(dependencies=[MISSING_ID]))
    assert err["details"] == [{"path": "dependencies.0", "message": "no such work item"}]
    assert MISSING_ID in err["message"]
    err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body=task(dependencies=[known["id"], MISSING_ID]))
    assert paths(err) == ["dependencies.1"]
    # A deleted item is no dependency either.
    assert client.delete(f"{ITEMS}/{known['id']}", headers=pm).status_code == 204
    target = create(client, pm, task())
    err = refused(
        client, "PATCH", f"{ITEMS}/{target['id']}", 422, "invalid_input", pm, body={"dependencies": [known["id"]]}
    )
    assert paths(err) == ["dependencies.0"]


# Parents.


def test_parents_follow_the_epic_task_subtask_hierarchy(client: TestClient, pm: Headers, op: Headers) -> None:
    epic = create(client, pm, {"type": "epic", "title": "launch"})
    story = create(client, pm, task(parent_id=epic["id"]))
    sub = create(client, pm, {"type": "subtask", "title": "a piece", "parent_id": story["id"]})

    def parent_error(body: dict[str, Any], message: str, method: str = "POST", path: str = ITEMS) -> None:
        err = refused(client, method, path, 422, "invalid_input", pm, body=body)
        assert err["details"] == [{"path": "parent_id", "message": message}], err

    parent_error({"type": "subtask", "title": "x", "parent_id": epic["id"]}, "is an epic; expected a task")
    parent_error({"type": "subtask", "title": "x"}, "required: a task")
    parent_error({"type": "epic", "title": "x", "parent_id": epic["id"]}, "is an epic; expected no parent")
    parent_error({"type": "epic", "title": "x", "parent_id": story["id"]}, "is a task; expected no parent")
    parent_error(task(parent_id=sub["id"]), "is a subtask; expected an epic")
    parent_error(task(parent_id=MISSING_ID), "no such item")
    parent_error({"parent_id": None}, "required: a task", "PATCH", f"{ITEMS}/{sub['id']}")
    parent_error({"parent_id": epic["id"]}, "is an epic; expected a task", "PATCH", f"{ITEMS}/{sub['id']}")

    # Custom types take any parent, but not one that makes a cycle.
    registered = client.post(TYPES, json={"name": "note", "schema": {"type": "object"}}, headers=op)
    assert registered.status_code == 201, registered.text
    top = create(client, pm, {"type": "note", "title": "top"})
    below = create(client, pm, {"type": "note", "title": "below", "parent_id": top["id"]})
    for parent in (below["id"], top["id"]):
        err = refused(client, "PATCH", f"{ITEMS}/{top['id']}", 422, "invalid_input", pm, body={"parent_id": parent})
        assert err["details"] == [{"path": "parent_id", "message": "is a descendant"}]


# Bodies that are not what the API reads.


def test_malformed_json_is_a_400(client: TestClient, pm: Headers) -> None:
    item = create(client, pm, task())
    for method, path, content in (
        ("POST", ITEMS, b'{"title": "unfinished",'),
        ("PATCH", f"{ITEMS}/{item['id']}", b"{'title': 'single quotes'}"),
        ("POST", f"{ITEMS}/{item['id']}/transition", b'{"to": done}'),
        ("POST", f"{ITEMS}/{item['id']}/claim", b"{"),
        ("POST", TYPES, b"{name: note}"),
    ):
        err = refused(client, method, path, 400, "malformed_json", pm, content=content)
        assert err["message"].startswith("request body is not valid JSON") and err["details"] == []


def test_a_payload_over_the_limit_is_a_413(client: TestClient, pm: Headers) -> None:
    limit = Settings.model_fields["work_item_max_payload_bytes"].default
    assert limit == 256 * 1024
    assert client.app.state.wiring.settings.work_item_max_payload_bytes == limit  # type: ignore[attr-defined]
    # Payload and metadata together, as compact JSON: {"x":"aaa…"} and {}.
    fits = "a" * (limit - len('{"x":""}') - len("{}"))
    create(client, pm, task(payload={"x": fits}))
    err = refused(client, "POST", ITEMS, 413, "payload_too_large", pm, body=task(payload={"x": fits + "a"}))
    assert err["details"] == [{"path": "payload", "message": f"{limit + 1} bytes > {limit}"}]
    assert f"the limit is {limit}" in err["message"]
    # Metadata counts too, and an update is held to the same limit.
    refused(client, "POST", ITEMS, 413, "payload_too_large", pm, body=task(payload={"x": fits}, metadata={"y": 1}))
    small = create(client, pm, task())
    refused(
        client, "PATCH", f"{ITEMS}/{small['id']}", 413, "payload_too_large", pm, body={"metadata": {"x": fits + "aaaa"}}
    )


def test_fields_the_api_does_not_take(client: TestClient, pm: Headers, op: Headers) -> None:
    item = create(client, pm, task())
    for method, path, body in (
        ("POST", ITEMS, task(status="done")),
        ("PATCH", f"{ITEMS}/{item['id']}", {"status": "done"}),
    ):
        err = refused(client, method, path, 422, "invalid_input", pm, body=body)
        assert err["details"] == [
            {
                "path": "body",
                "message": "Value error, status cannot be set here; use POST /api/v1/work-items/{id}/transition",
            }
        ]

    # Priorities are whole numbers from 0 to 100.
    item = create(client, pm, task())
    for priority in (101, -1, "high", 50.5, None):
        requests = [("PATCH", f"{ITEMS}/{item['id']}", {"priority": priority})]
        if priority is not None:  # null on create is left out; on update it is refused
            requests.append(("POST", ITEMS, task(priority=priority)))
        for method, path, body in requests:
            err = refused(client, method, path, 422, "invalid_input", pm, body=body)
            assert paths(err) == ["body.priority"], (priority, err)

    # Fields that cannot be empty cannot be nulled by an update.
    item = create(client, pm, task(labels=["keep"], payload={"keep": True}))
    for field in ("title", "priority", "labels", "dependencies", "payload"):
        err = refused(client, "PATCH", f"{ITEMS}/{item['id']}", 422, "invalid_input", pm, body={field: None})
        assert paths(err) == [f"body.{field}"] and "cannot be null" in err["details"][0]["message"], err

    # Not even when the type's schema does not ask for a title.
    assert client.post(TYPES, json={"name": "loose", "schema": {}}, headers=op).status_code == 201
    item = create(client, pm, {"type": "loose", "title": "t"})
    err = refused(client, "PATCH", f"{ITEMS}/{item['id']}", 422, "invalid_input", pm, body={"title": None})
    assert paths(err) == ["body.title"]


# Versions.


def test_a_stale_version_is_a_409_in_the_body_or_if_match(client: TestClient, pm: Headers) -> None:
    item = create(client, pm, task())
    path = f"{ITEMS}/{item['id']}"
    moved = client.patch(path, json={"title": "v2", "version": 1}, headers=pm)
    assert moved.status_code == 200 and moved.json()["version"] == 2
    stale = [{"path": "version", "message": "current version is 2"}]
    assert refused(client, "PATCH", path, 409, "conflict", pm, body={"title": "x", "version": 1})["details"] == stale
    for if_match in ("1", '"1"', 'W/"1"'):
        err = refused(
            client, "PATCH", path, 409, "conflict", pm, body={"title": "x"}, extra_headers={"If-Match": if_match}
        )
        assert err["details"] == stale
    # Both given: each must hold, a current one does not overrule a stale one.
    err = refused(
        client, "PATCH", path, 409, "conflict", pm, body={"title": "x", "version": 2}, extra_headers={"If-Match": "1"}
    )
    assert err["details"] == stale
    refused(
        client, "PATCH", path, 409, "conflict", pm, body={"title": "x", "version": 1}, extra_headers={"If-Match": "2"}
    )
    current = client.patch(path, json={"title": "v3"}, headers={**pm, "If-Match": 'W/"2"'})
    assert current.status_code == 200 and current.json()["version"] == 3
    # "*" (RFC 9110): any current version will do.
    anyway = client.patch(path, json={"title": "v4"}, headers={**pm, "If-Match": "*"})
    assert anyway.status_code == 200 and anyway.json()["version"] == 4

    # An If-Match that is no version number.
    item = create(client, pm, task())
    for if_match in ("abc", "-1", '"1.5"', '"1", "2"', ""):
        err = refused(
            client,
            "PATCH",
            f"{ITEMS}/{item['id']}",
            422,
            "invalid_input",
            pm,
            body={"title": "x"},
            extra_headers={"If-Match": if_match},
        )
        assert err["details"] == [{"path": "If-Match", "message": "not a number"}], if_match


# Idempotence keys.


def test_an_idempotence_key_retries_once_and_refuses_another_body(client: TestClient, pm: Headers) -> None:
    first = create(client, pm, task(idempotence_key="upstream-7"))
    before = counts(client)
    again = client.post(ITEMS, json=task(idempotence_key="upstream-7"), headers=pm)
    assert again.status_code == 200 and again.json() == first
    via_header = client.post(ITEMS, json=task(), headers={**pm, "Idempotency-Key": "upstream-7"})
    assert via_header.status_code == 200 and via_header.json()["id"] == first["id"]
    assert counts(client) == before, "a retry wrote something"
    err = refused(client, "POST", ITEMS, 409, "conflict", pm, body=task("another title", idempotence_key="upstream-7"))
    assert err["details"] == [{"path": "idempotence_key", "message": f"already names {first['id']} with another body"}]
    refused(
        client,
        "POST",
        ITEMS,
        409,
        "conflict",
        pm,
        body=task(priority=90),
        extra_headers={"Idempotency-Key": "upstream-7"},
    )
    assert counts(client)["work_items"] == 1

    # The header and the body must agree on the key.
    err = refused(
        client,
        "POST",
        ITEMS,
        422,
        "invalid_input",
        pm,
        body=task(idempotence_key="a"),
        extra_headers={"Idempotency-Key": "b"},
    )
    assert err["details"] == [{"path": "idempotence_key", "message": "differs from the header"}]
    same = client.post(ITEMS, json=task(idempotence_key="a"), headers={**pm, "Idempotency-Key": "a"})
    assert same.status_code == 201 and same.json()["idempotence_key"] == "a"


# Cursors.


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_a_cursor_this_api_did_not_issue_is_a_422(client: TestClient, token: TokenFactory) -> None:
    me = token("user:me", scopes=["work:read", "work:write", "work:claim", "work:supervise"], groups=["ops"])
    for _ in range(3):
        create(client, me, task(offer={"type": "human", "group": "ops"}))
    list_cursor = client.get(ITEMS, params={"limit": 1}, headers=me).json()["next_cursor"]
    queue_cursor = client.get("/api/v1/queues/available", params={"limit": 1}, headers=me).json()["next_cursor"]
    assert list_cursor and queue_cursor
    queues = ["/api/v1/queues/available", "/api/v1/queues/claimed", "/api/v1/queues/lifecycles/work"]
    for path in [ITEMS, *queues, "/api/v1/queues/groups/ops"]:
        # The other listing's cursor has another shape: it is as foreign as any.
        foreign = queue_cursor if path == ITEMS else list_cursor
        for cursor in (
            "zzz",
            "%%%",
            _b64({"a": 1}),
            _b64(["yesterday", "x"]),
            _b64([1, "2026-01-01T00:00:00", "x"]),
            foreign,
        ):
            err = refused(client, "GET", f"{path}?{urlencode({'cursor': cursor})}", 422, "invalid_input", me)
            assert err["details"] == [{"path": "cursor", "message": "malformed"}], (path, cursor)


def test_an_unknown_or_repeated_query_parameter_is_refused(client: TestClient, pm: Headers) -> None:
    # A misspelt filter would otherwise list everything; of a repeated one, the last value would win.
    err = refused(client, "GET", f"{ITEMS}?stauts=done", 422, "invalid_input", pm)
    assert err["details"] == [{"path": "query.stauts", "message": "is not a parameter of this operation"}]
    err = refused(client, "GET", f"{ITEMS}?parent_id=a&parent_id=b", 422, "invalid_input", pm)
    assert err["details"] == [{"path": "query.parent_id", "message": "takes one value; it was sent 2 times"}]
    err = refused(client, "POST", f"{ITEMS}?dry_run=1", 422, "invalid_input", pm, body=task())
    assert paths(err) == ["query.dry_run"]
    # What the operation declares still works.
    assert client.get(ITEMS, params={"parent_id": "a", "limit": 5}, headers=pm).status_code == 200


# The types registry.


def test_the_types_registry_refuses_bad_and_conflicting_definitions(client: TestClient, op: Headers) -> None:
    err = refused(client, "POST", TYPES, 422, "invalid_input", op, body={"name": "bad", "schema": {"type": "nonsense"}})
    assert paths(err) == ["schema.type"] and err["message"].startswith("schema is not a valid JSON Schema")
    err = refused(
        client,
        "POST",
        TYPES,
        422,
        "invalid_input",
        op,
        body={"name": "bad", "schema": {"properties": {"a": {"minLength": -1}}}},
    )
    assert paths(err) == ["schema.properties.a.minLength"]
    assert paths(refused(client, "POST", TYPES, 422, "invalid_input", op, body={"name": "bad", "schema": []})) == [
        "body.schema"
    ]
    assert paths(refused(client, "POST", TYPES, 422, "invalid_input", op, body={"name": "Bad Name", "schema": {}})) == [
        "body.name"
    ]
    err = refused(
        client, "POST", TYPES, 422, "invalid_input", op, body={"name": "bad", "schema": {}, "lifecycle": "nope"}
    )
    assert paths(err) == ["body.lifecycle"]

    # A built-in type cannot be redefined.
    err = refused(client, "POST", TYPES, 409, "conflict", op, body={"name": "task", "schema": {"type": "object"}})
    assert err["message"] == "'task' is a built-in type and cannot be redefined"

    # The same definition again is a 200; another one under the name a 409.
    body = {"name": "invoice", "description": "bill a customer", "schema": {"type": "object"}, "lifecycle": "canonical"}
    first = client.post(TYPES, json=body, headers=op)
    assert first.status_code == 201
    before = counts(client)
    again = client.post(TYPES, json=body, headers=op)
    assert again.status_code == 200 and again.json() == first.json()
    assert counts(client) == before
    for change in (
        {"schema": {"type": "object", "required": ["payload"]}},
        {"lifecycle": "work"},
        {"description": "x"},
    ):
        err = refused(client, "POST", TYPES, 409, "conflict", op, body={**body, **change})
        assert "already registered with another definition" in err["message"]
    assert client.get(f"{TYPES}/invoice", headers=op).json() == first.json()


def test_an_item_of_a_registered_type_is_validated_against_its_schema(
    client: TestClient, pm: Headers, op: Headers
) -> None:
    schema = {
        "type": "object",
        "required": ["title", "payload"],
        "properties": {
            "payload": {
                "type": "object",
                "required": ["customer", "amount"],
                "properties": {"customer": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
            }
        },
    }
    registered = client.post(TYPES, json={"name": "invoice", "schema": schema, "lifecycle": "canonical"}, headers=op)
    assert registered.status_code == 201
    err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body={"type": "invoice", "title": "bill"})
    assert sorted(paths(err)) == ["payload.amount", "payload.customer"]
    bad = {"type": "invoice", "title": "bill", "payload": {"customer": 7, "amount": -1}}
    err = refused(client, "POST", ITEMS, 422, "invalid_input", pm, body=bad)
    assert sorted(paths(err)) == ["payload.amount", "payload.customer"]
    item = create(client, pm, {"type": "invoice", "title": "bill", "payload": {"customer": "acme", "amount": 10}})
    assert (item["type"], item["lifecycle"], item["status"]) == ("invoice", "canonical", "planned")
    err = refused(
        client, "PATCH", f"{ITEMS}/{item['id']}", 422, "invalid_input", pm, body={"payload": {"customer": "acme"}}
    )
    assert paths(err) == ["payload.amount"]


def test_a_request_body_over_the_api_limit_is_refused_before_it_is_read(client: TestClient, pm: Headers) -> None:
    before = counts(client)
    limit = client.app.state.wiring.settings.max_request_bytes  # type: ignore[attr-defined]
    body = json.dumps(task(payload={"x": "a" * limit})).encode()
    response = client.post(ITEMS, content=body, headers={**pm, "content-type": "application/json"})
    assert response.status_code == 413 and error(response)["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = client.post(ITEMS, content=chunks(), headers={**pm, "content-type": "application/json"})
    assert streamed.status_code == 413 and error(streamed)["code"] == "payload_too_large"
    assert counts(client) == before


def test_registering_a_type_needs_an_operators_all_tenant_token(client: TestClient, pm: Headers) -> None:
    """Types are shared by every tenant: one tenant's token cannot define them for the others."""
    err = refused(client, "POST", TYPES, 403, "forbidden", pm, body={"name": "memo", "schema": {"type": "object"}})
    assert "all-tenant" in err["message"] and err["details"] == [
        {"path": "tenant", "message": "acme is one tenant; needs *"}
    ]
