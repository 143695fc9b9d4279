"""The API of the pauses of templates and capability queues, on SQLite and PostgreSQL, with no
worker running: who may pause what, for whom, the answers to bad input, what a saga shows while
held, the listing and the audit trail, and a saga's own pause on top of its template's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import BACKENDS
from tests.integration.harness import admin_client, user_token
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget

ADMIN = "wy_test_pauses_admin_token_0123456789"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


def test_the_api_pauses_and_resumes_a_template_in_the_tenant(client: TestClient) -> None:
    # No workers run here: sagas wait on their first step, or are held.
    operator = user_token(client, "acme", ["sagas:control", "sagas:read", "sagas:write"])
    reader = user_token(client, "acme", ["sagas:read", "sagas:write"])
    stranger = user_token(client, "globex", ["sagas:control", "sagas:read", "sagas:write"])
    reason = {"reason": "bad release of the warehouse service"}

    refused = client.post("/api/v1/templates/it.three/pause", json=reason, headers=reader)
    assert refused.status_code == 403 and "sagas:control" in refused.json()["error"]["message"]
    for bad, path in (({}, "reason"), ({"reason": ""}, "reason"), ({"reason": "x", "force": 1}, "force")):
        answer = client.post("/api/v1/templates/it.three/pause", json=bad, headers=operator)
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["details"][0]["path"].removeprefix("body.") == path, bad
    elsewhere = client.post("/api/v1/templates/it.three/pause", json={**reason, "tenant": "globex"}, headers=operator)
    assert elsewhere.status_code == 403 and "its own sagas only" in elsewhere.json()["error"]["message"]
    missing = client.post("/api/v1/templates/no.such/pause", json=reason, headers=operator)
    assert missing.status_code == 404
    assert client.get("/api/v1/pauses", headers=operator).json() == []

    paused = client.post("/api/v1/templates/it.three/pause", json=reason, headers=operator)
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["resumed"] is False and body["pause"]["tenant"] == "acme" and body["pause"]["actor"] == "user:ann"
    again = client.post("/api/v1/templates/it.three/pause", json=reason, headers=operator)
    assert again.status_code == 409 and "paused already" in again.json()["error"]["message"]

    ours = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}, headers=operator)
    assert ours.status_code == 202
    saga = ours.json()
    assert saga["held_by"] == "template:acme:it.three" and saga["attempts"] == []
    shown = client.get(f"/api/v1/sagas/{saga['id']}", headers=operator).json()
    assert shown["hold"]["reason"] == reason["reason"] and shown["held_at"] is not None
    theirs = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}, headers=stranger)
    assert theirs.json()["held_by"] is None and len(theirs.json()["attempts"]) == 1  # another tenant's: sent

    [listed] = client.get("/api/v1/pauses", headers=operator).json()
    assert (listed["kind"], listed["name"], listed["held"], listed["actor"]) == ("template", "it.three", 1, "user:ann")
    assert client.get("/api/v1/pauses", headers=stranger).json() == []  # acme's pause is acme's business
    not_theirs = client.post("/api/v1/templates/it.three/resume", json=reason, headers=stranger)
    assert not_theirs.status_code == 409 and "not paused for tenant 'globex'" in not_theirs.json()["error"]["message"]

    resumed = client.post("/api/v1/templates/it.three/resume", json={"reason": "fixed"}, headers=operator).json()
    assert resumed["resumed"] is True and resumed["sent"] == 1
    after = client.get(f"/api/v1/sagas/{saga['id']}", headers=operator).json()
    assert after["held_by"] is None and [a["step_name"] for a in after["attempts"]] == ["one"]
    history = client.get("/api/v1/pauses/history", headers=operator).json()
    assert [(e["action"], e["actor"], e["reason"]) for e in history] == [
        ("resume", "user:ann", "fixed"),
        ("pause", "user:ann", reason["reason"]),
    ]
    assert client.get("/api/v1/pauses/history", headers=stranger).json() == []
    assert client.get("/api/v1/pauses/history", params={"kind": "nope"}, headers=operator).status_code == 422


def test_an_operator_pauses_a_capability_for_everybody(client: TestClient) -> None:
    tenant = user_token(client, "acme", ["sagas:control", "sagas:read", "sagas:write"])
    bad = client.post("/api/v1/capabilities/Not%20A%20Cap/pause", json={"reason": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["path"].removeprefix("path.") == "capability"

    paused = client.post("/api/v1/capabilities/alpha/pause", json={"reason": "broker maintenance"})
    assert paused.status_code == 200 and paused.json()["pause"]["tenant"] == "*"
    saga = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}, headers=tenant).json()
    assert saga["held_by"] == "capability:*:alpha"
    [seen] = client.get("/api/v1/pauses", headers=tenant).json()  # it holds acme's sagas: acme sees it
    assert (seen["tenant"], seen["held"]) == ("*", 1)
    refused = client.post("/api/v1/capabilities/alpha/resume", json={"reason": "mine"}, headers=tenant)
    assert refused.status_code == 403 and "only an all-tenants token resumes it" in refused.json()["error"]["message"]
    # An operator may pause for one tenant, too.
    one = client.post("/api/v1/capabilities/beta/pause", json={"reason": "x", "tenant": "acme"})
    assert one.status_code == 200 and one.json()["pause"]["tenant"] == "acme"
    assert client.post("/api/v1/capabilities/beta/resume", json={"reason": "x", "tenant": "acme"}).status_code == 200

    resumed = client.post("/api/v1/capabilities/alpha/resume", json={"reason": "done"})
    assert resumed.status_code == 200 and resumed.json()["sent"] == 1
    assert client.get(f"/api/v1/sagas/{saga['id']}", headers=tenant).json()["held_by"] is None
    assert client.post("/api/v1/capabilities/alpha/resume", json={"reason": "again"}).status_code == 409


def test_a_bulk_pause_and_a_template_pause_stack(client: TestClient) -> None:
    """A saga paused by bulk control while its template is paused: resuming the template leaves it
    paused (its own pause holds it); resuming it then sends its step."""
    client.post("/api/v1/templates/it.three/pause", json={"reason": "hold"})
    held = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "b"}}).json()
    assert held["held_by"] == "template:*:it.three"
    bulk = {"action": "pause", "reason": "incident", "filter": {"template": "it.three", "state": "running"}}
    done = client.post("/api/v1/sagas/bulk", json={**bulk, "dry_run": False, "expect": 1}).json()
    assert done["done"] == 1
    assert client.post("/api/v1/templates/it.three/resume", json={"reason": "ok"}).json()["sent"] == 1
    after = client.get(f"/api/v1/sagas/{held['id']}").json()
    assert after["held_by"] is None and after["paused_at"] is not None and after["attempts"] == []
    resumed = client.post(f"/api/v1/sagas/{held['id']}/resume", json={"reason": "go"}).json()
    assert [a["step_name"] for a in resumed["attempts"]] == ["one"] and resumed["paused_at"] is None
