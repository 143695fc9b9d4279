"""The HTTP API on a real database and broker: submissions, idempotence, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from models.base import Base
from models.principal import PrincipalType
from tests.conftest import BACKENDS
from tests.integration.harness import admin_client
from tests.integration.templates import FAN_OUT_HANDLERS, LOCKED, REVIEW_FIRST, THREE_STEPS
from tests.support import RedisTarget


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


ADMIN = "test-admin-token"


def counts(client: TestClient) -> dict[str, int]:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    # Published outbox rows are deleted on a short timer; delete them now so counts are stable.
    wiring.dispatcher.flush()
    sessions = wiring.sessions
    with sessions() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return dict(body["error"])


def test_submit_returns_202_and_the_saga(client: TestClient) -> None:
    response = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}})
    assert response.status_code == 202
    saga = response.json()
    assert saga["state"] == "running" and saga["template_version"] == "1.0.0"
    assert [s["name"] for s in saga["steps"]] == ["one", "two", "three"]
    assert saga["attempts"][0]["step_name"] == "one"
    assert client.get(f"/api/v1/sagas/{saga['id']}").json()["id"] == saga["id"]


def test_same_key_same_input_returns_the_first_saga(client: TestClient) -> None:
    body = {"template": "it.three", "input": {"tag": "a"}, "idempotence_key": "order-1"}
    first = client.post("/api/v1/sagas", json=body)
    again = client.post("/api/v1/sagas", json=body)
    by_header = client.post(
        "/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}, headers={"Idempotency-Key": "order-1"}
    )
    assert (first.status_code, again.status_code, by_header.status_code) == (202, 200, 200)
    assert first.json()["id"] == again.json()["id"] == by_header.json()["id"]
    assert counts(client)["saga_runs"] == 1


def test_same_key_other_input_is_a_conflict(client: TestClient) -> None:
    client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}, "idempotence_key": "k"})
    before = counts(client)
    response = client.post(
        "/api/v1/sagas", json={"template": "it.three", "input": {"tag": "b"}, "idempotence_key": "k"}
    )
    assert response.status_code == 409
    assert "different" in error(response)["message"]
    assert counts(client) == before


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ({"template": "nope", "input": {}}, 404, "not_found", None),
        ({"template": "it.three", "version": "9.9.9", "input": {"tag": "a"}}, 404, "not_found", None),
        ({"template": "it.three", "input": {"tag": 5}}, 422, "invalid_input", "input.tag"),
        ({"template": "it.three", "input": {}}, 422, "invalid_input", "input"),
        ({"input": {"tag": "a"}}, 422, "invalid_input", "body.template"),
        ({"template": "it.three", "input": {"tag": "a"}, "surprise": 1}, 422, "invalid_input", "body.surprise"),
    ],
)
def test_bad_submissions_get_a_clear_4xx_and_write_nothing(
    client: TestClient, body: dict[str, Any], status: int, code: str, path: str | None
) -> None:
    before = counts(client)
    response = client.post("/api/v1/sagas", json=body)
    assert response.status_code == status, response.text
    err = error(response)
    assert err["code"] == code
    if path is not None:
        assert path in [d["path"] for d in err["details"]]
    assert counts(client) == before


def test_malformed_json_is_a_400(client: TestClient) -> None:
    before = counts(client)
    response = client.post("/api/v1/sagas", content=b'{"template": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error(response)["code"] == "malformed_json"
    assert counts(client) == before


def test_a_template_whose_step_names_no_capability_is_refused(client: TestClient) -> None:
    before = counts(client)
    doc = {"name": "bad", "version": "1.0.0", "steps": [{"name": "a", "handler": "h"}]}
    response = client.post("/api/v1/templates", json=doc)
    assert response.status_code == 422
    assert "body.steps.0.capability" in [d["path"] for d in error(response)["details"]]
    assert counts(client) == before


def test_template_versions_are_immutable(client: TestClient) -> None:
    assert client.post("/api/v1/templates", json=THREE_STEPS).status_code == 200
    changed = {**THREE_STEPS, "description": "changed"}
    before = counts(client)
    response = client.post("/api/v1/templates", json=changed)
    assert response.status_code == 409 and "immutable" in error(response)["message"]
    assert counts(client) == before
    newer = client.post("/api/v1/templates", json={**changed, "version": "1.1.0"})
    assert newer.status_code == 201
    assert client.get("/api/v1/templates/it.three").json()["version"] == "1.1.0"
    assert client.get("/api/v1/templates/it.three/1.0.0").json()["spec"]["description"] == ""


def test_unknown_saga_is_a_404(client: TestClient) -> None:
    response = client.get("/api/v1/sagas/does-not-exist")
    assert response.status_code == 404 and error(response)["code"] == "not_found"


def test_sagas_page_through_with_a_cursor_and_filter_by_state(client: TestClient) -> None:
    ids = [
        client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": str(i)}}).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/sagas", params=params).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert client.get("/api/v1/sagas", params={"state": "completed"}).json()["items"] == []
    bad = client.get("/api/v1/sagas", params={"state": "bogus"})
    assert bad.status_code == 422 and error(bad)["details"][0]["path"] == "query.state"


def test_a_template_whose_schema_refers_nowhere_is_refused(client: TestClient) -> None:
    before = counts(client)
    doc = {
        "name": "refs",
        "version": "1.0.0",
        "input_schema": {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
        "steps": [{"name": "a", "capability": "c", "handler": "h"}],
    }
    response = client.post("/api/v1/templates", json=doc)
    assert response.status_code == 422 and "points nowhere" in error(response)["message"]
    assert counts(client) == before


def test_input_with_nan_is_refused(client: TestClient) -> None:
    before = counts(client)
    response = client.post(
        "/api/v1/sagas",
        content=b'{"template": "it.three", "input": {"tag": "a", "x": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and "NaN" in error(response)["message"]
    assert counts(client) == before


def test_a_cursor_this_api_did_not_issue_is_a_422(client: TestClient) -> None:
    import base64

    forged = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|x").decode()
    for cursor in (forged, "!!!"):
        response = client.get("/api/v1/sagas", params={"cursor": cursor})
        assert response.status_code == 422 and error(response)["details"][0]["path"] == "cursor"


def test_saga_and_template_endpoints_need_a_token_with_the_scope(client: TestClient) -> None:
    from orchestrator.work.tokens import create_token

    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        reader = create_token(
            session, principal_type=PrincipalType.user, principal_id="r", tenant="acme", scopes=["sagas:read"]
        )
    body = {"template": "it.three", "input": {"tag": "a"}}
    anonymous = {"Authorization": ""}
    before = counts(client)
    assert client.post("/api/v1/sagas", json=body, headers=anonymous).status_code == 401
    assert client.get("/api/v1/sagas", headers=anonymous).status_code == 401
    assert client.post("/api/v1/templates", json=THREE_STEPS, headers=anonymous).status_code == 401
    as_reader = {"Authorization": f"Bearer {reader.secret}"}
    refused = client.post("/api/v1/sagas", json=body, headers=as_reader)
    assert refused.status_code == 403 and "sagas:write" in error(refused)["message"]
    assert client.post("/api/v1/templates", json=THREE_STEPS, headers=as_reader).status_code == 403
    assert counts(client) == before
    assert client.get("/api/v1/sagas", headers=as_reader).status_code == 200
    assert client.get("/api/v1/templates/it.three", headers=as_reader).status_code == 200


def test_a_submit_answers_the_saga_as_it_reads_back(client: TestClient) -> None:
    # Answered from what the submit wrote (no second read of the saga); one that opened work
    # items is read back. Either way, exactly what GET answers now.
    review = REVIEW_FIRST
    empty_fan_out = {**FAN_OUT_HANDLERS, "name": "it.fan_first", "steps": FAN_OUT_HANDLERS["steps"][1:]}
    sla = {**THREE_STEPS, "name": "it.sla", "sla": {"target_ms": 60_000, "warn_at_pct": 80}}
    deadline = {**THREE_STEPS, "name": "it.deadline_three", "deadline_ms": 60_000}
    for template in (LOCKED, deadline, review, empty_fan_out, sla):
        registered = client.post("/api/v1/templates", json=template)
        assert registered.status_code == 201, registered.text
    submits = [
        {"template": "it.three", "input": {"tag": "a"}},
        {"template": "it.locked", "input": {"account": "A-1"}},
        {"template": "it.deadline_three", "input": {"tag": "a"}, "tenant": "acme"},
        {"template": "it.review_first", "input": {"tag": "a"}, "tenant": "acme"},
        {"template": "it.fan_first", "input": {"items": []}},
        {"template": "it.sla", "input": {"tag": "a"}, "idempotence_key": "with-sla"},
    ]
    for body in submits:
        answered = client.post("/api/v1/sagas", json=body)
        assert answered.status_code == 202, answered.text
        assert answered.json() == client.get(f"/api/v1/sagas/{answered.json()['id']}").json(), body["template"]
    fencing = client.post("/api/v1/sagas", json=submits[1]).json()["attempts"][0]["fencing_token"]
    assert isinstance(fencing, int)
    again = client.post("/api/v1/sagas", json=submits[-1])
    assert again.status_code == 200 and again.json() == client.get(f"/api/v1/sagas/{again.json()['id']}").json()
