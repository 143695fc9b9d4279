"""Input the API cannot keep is a 422 naming the field, before anything is written: lone
surrogates, NUL, non-finite numbers and documents nested too deep, in bodies, query strings,
paths and headers; and what was refused leaves every listing answering (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from models.documents import MAX_DEPTH
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, task

ITEMS = "/api/v1/work-items"


@pytest.fixture
def me(token: TokenFactory) -> Headers:
    scopes = ["work:read", "work:write", "work:claim", "sagas:read", "sagas:write", "templates:write", "webhooks"]
    return token("user:me", scopes=scopes, groups=["ops"])


def post_raw(client: TestClient, path: str, text: str, headers: Headers) -> Any:
    return client.post(path, content=text.encode(), headers=headers | {"content-type": "application/json"})


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep (built as text: Python's own encoder would recurse)."""
    return '{"x": ' * depth + '"bottom"' + "}" * depth


def assert_refused(client: TestClient, response: Any, path: str, before: dict[str, int]) -> None:
    assert response.status_code == 422, response.text
    details = error(response)["details"]
    assert isinstance(details, list) and details[0]["path"] == path, details
    assert counts(client) == before


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ('{"type": "task", "title": "t", "description": "d", "payload": {"note": "\\ud800"}}', "body.payload.note"),
        ('{"type": "task", "title": "a\\u0000b", "description": "d"}', "body.title"),
        ('{"type": "task", "title": "t", "description": "\\u0000"}', "body.description"),
        ('{"type": "task", "title": "t", "description": "d", "payload": {"n": NaN}}', "body"),
        ('{"type": "task", "title": "t", "description": "d", "payload": {"n": 1e999}}', "body.payload.n"),
        ('{"type": "task", "title": "t", "description": "d", "payload": {"\\ud83d": 1}}', "body.payload"),
    ],
)
def test_a_work_item_body_that_cannot_be_kept_is_a_422_and_nothing_is_written(
    client: TestClient, me: Headers, document: str, path: str
) -> None:
    before = counts(client)
    assert_refused(client, post_raw(client, ITEMS, document, me), path, before)
    # Nothing half-written poisons the tenant's listings.
    assert client.get(ITEMS, headers=me).status_code == 200
    assert client.get("/api/v1/queues/available", headers=me).status_code == 200


def test_a_document_nested_too_deep_is_a_422_not_a_crash(client: TestClient, me: Headers) -> None:
    before = counts(client)
    for depth in (MAX_DEPTH, 600, 990):
        # The payload sits one level below the body.
        response = post_raw(client, ITEMS, _task_with_payload(nested(depth)), me)
        assert response.status_code == 422, response.text[:300]
        assert f"nests deeper than {MAX_DEPTH} levels" in error(response)["message"]
    assert counts(client) == before
    # At the limit it is kept.
    response = post_raw(client, ITEMS, _task_with_payload(nested(MAX_DEPTH - 2)), me)
    assert response.status_code == 201, response.text[:300]


def _task_with_payload(payload_json: str) -> str:
    return json.dumps(task())[:-1] + ', "payload": ' + payload_json + "}"


def test_a_saga_input_with_a_lone_surrogate_or_nul_is_a_422(client: TestClient, me: Headers) -> None:
    template = {"name": "gate.noop", "version": "1.0.0", "steps": [{"name": "a", "capability": "c", "handler": "h"}]}
    assert client.post("/api/v1/templates", json=template, headers=me).status_code == 201
    before = counts(client)
    for document, path in (
        ('{"template": "gate.noop", "input": {"name": "\\udfff"}}', "body.input.name"),
        ('{"template": "gate.noop", "input": {"name": "a\\u0000"}}', "body.input.name"),
        ('{"template": "gate\\u0000noop", "input": {}}', "body.template"),
        ('{"template": "gate.noop", "version": "1.0.0\\u0000", "input": {}}', "body.version"),
    ):
        assert_refused(client, post_raw(client, "/api/v1/sagas", document, me), path, before)
    assert client.get("/api/v1/sagas", headers=me).status_code == 200


def test_nul_in_a_query_a_path_or_a_header_is_a_422(client: TestClient, me: Headers) -> None:
    before = counts(client)
    response = client.get(ITEMS, params={"status": "open\x00"}, headers=me)
    assert_refused(client, response, "query.status", before)
    response = client.get(ITEMS + "/" + quote("WI-\x00"), headers=me)
    assert_refused(client, response, "path", before)
    response = client.get(f"/api/v1/sagas/{quote(chr(0xD800), errors='surrogatepass')}", headers=me)
    assert_refused(client, response, "path", before)
    headers: dict[str, Any] = me | {"content-type": "application/json", "Idempotency-Key": b"k\x00"}
    response = client.post(ITEMS, content=json.dumps(task()).encode(), headers=headers)
    assert_refused(client, response, "header.idempotency-key", before)


def test_a_webhook_url_with_nul_is_a_422(client: TestClient, me: Headers) -> None:
    before = counts(client)
    document = '{"url": "https://example.com/\\u0000", "events": ["sla.breached"]}'
    assert_refused(client, post_raw(client, "/api/v1/webhooks", document, me), "body.url", before)


def test_a_cursor_that_decodes_to_deep_json_or_a_huge_number_is_a_422(client: TestClient, me: Headers) -> None:
    for raw in ("[" * 900 + "]" * 900, json.dumps([2**64, "2026-01-01T00:00:00+00:00", "x"])):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode()
        for path in (ITEMS, "/api/v1/queues/available"):
            response = client.get(path, params={"cursor": cursor}, headers=me)
            assert response.status_code == 422, (path, response.text[:200])
            assert error(response)["details"] == [{"path": "cursor", "message": "malformed"}]


# Schemas users register run on every request: linear-time patterns, local references only.

EVIL = "^(a+)+$"


def test_a_catastrophic_pattern_runs_in_linear_time_in_a_type_and_a_template(
    client: TestClient, token: TokenFactory, me: Headers
) -> None:
    op = token("user:op", scopes=["types:write", "templates:write"], tenant="*")
    schema = {
        "type": "object",
        "properties": {"payload": {"properties": {"code": {"type": "string", "pattern": EVIL}}}},
    }
    response = client.post(
        "/api/v1/work-item-types", json={"name": "evil", "schema": schema, "lifecycle": "work"}, headers=op
    )
    assert response.status_code == 201, response.text
    # With a backtracking engine this input took 11 s and doubled with every character.
    body = {"type": "evil", "title": "t", "payload": {"code": "a" * 40 + "!"}}
    response = client.post(ITEMS, json=body, headers=me)
    assert response.status_code == 422 and "does not match" in response.text
    template = {
        "name": "gate.evil",
        "version": "1.0.0",
        "input_schema": {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}},
        "steps": [{"name": "a", "capability": "c", "handler": "h"}],
    }
    assert client.post("/api/v1/templates", json=template, headers=me).status_code == 201
    response = client.post(
        "/api/v1/sagas", json={"template": "gate.evil", "input": {"code": "a" * 40 + "!"}}, headers=me
    )
    assert response.status_code == 422 and error(response)["details"][0]["path"] == "input.code"


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(a)\\1"}}}, "cannot run in linear time"),
        ({"type": "object", "patternProperties": {"(?=x)": {}}}, "cannot run in linear time"),
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "only local $ref"),
        ({"$ref": "file:///etc/passwd"}, "only local $ref"),
        ({"$defs": {}, "properties": {"x": {"$ref": "#/$defs/nowhere"}}}, "points nowhere"),
    ],
)
def test_a_type_schema_with_a_pattern_or_ref_it_cannot_run_safely_is_refused(
    client: TestClient, token: TokenFactory, schema: dict[str, Any], problem: str
) -> None:
    op = token("user:op", scopes=["types:write"], tenant="*")
    before = counts(client)
    response = client.post("/api/v1/work-item-types", json={"name": "t2", "schema": schema}, headers=op)
    assert response.status_code == 422, response.text
    assert problem in error(response)["message"]
    assert error(response)["details"][0]["path"].startswith("schema")
    assert counts(client) == before


@pytest.mark.parametrize("version", ["1.0.0\n", "1.0.0+build.1", "01.0.0", "1.0"])
def test_a_template_version_must_be_strict_semver(client: TestClient, me: Headers, version: str) -> None:
    before = counts(client)
    template = {"name": "gate.v", "version": version, "steps": [{"name": "a", "capability": "c", "handler": "h"}]}
    response = client.post("/api/v1/templates", json=template, headers=me)
    assert response.status_code == 422 and error(response)["details"][0]["path"] == "body.version"
    assert counts(client) == before


def test_a_work_items_result_is_held_to_the_payload_limit(client: TestClient, me: Headers) -> None:
    limit = client.app.state.wiring.settings.work_item_max_payload_bytes  # type: ignore[attr-defined]
    item = client.post(ITEMS, json=task(), headers=me).json()
    assert client.post(f"{ITEMS}/{item['id']}/start", headers=me).status_code == 200
    too_big = {"x": "a" * limit}
    response = client.post(f"{ITEMS}/{item['id']}/complete", json={"result": too_big}, headers=me)
    assert response.status_code == 413 and error(response)["details"][0]["path"] == "result"
    done = client.post(f"{ITEMS}/{item['id']}/complete", json={"result": {"ok": True}}, headers=me)
    assert done.status_code == 200 and done.json()["result"] == {"ok": True}
