"""``GET /api/v1/timers`` on SQLite and PostgreSQL, with no worker running: an operator lists
pending timers and running attempts' deadlines, filtered; a tenant's token may not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.principal import PrincipalType
from tests.conftest import BACKENDS
from tests.integration.harness import admin_client
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget

ADMIN = "wy_test_timers_admin_token_0123456789"
CLOCKED = {**THREE_STEPS, "name": "it.clocked", "deadline_ms": 600_000, "sla": {"target_ms": 300_000}}


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS, CLOCKED]) as test_client:
        yield test_client


def test_an_operator_lists_timers_and_deadlines(client: TestClient) -> None:
    assert client.get("/api/v1/timers").json()["total"] == 0
    clocked = client.post("/api/v1/sagas", json={"template": "it.clocked", "input": {"tag": "a"}}).json()["id"]
    plain = client.post("/api/v1/sagas", json={"template": "it.three", "input": {"tag": "b"}}).json()["id"]

    listing = client.get("/api/v1/timers").json()
    assert (listing["total"], listing["due"]) == (2, 0)
    assert sorted(t["kind"] for t in listing["timers"]) == ["saga_deadline", "saga_sla_breach"]
    assert all(t["saga_id"] == clocked for t in listing["timers"])
    assert listing["watched"] == 2 and listing["late"] == 0
    assert sorted(d["saga_id"] for d in listing["deadlines"]) == sorted([clocked, plain])

    only = client.get("/api/v1/timers", params={"kind": "saga_deadline"}).json()
    assert [t["kind"] for t in only["timers"]] == ["saga_deadline"] and only["total"] == 1
    deadlines = client.get("/api/v1/timers", params={"kind": "deadline", "saga_id": plain}).json()
    assert deadlines["timers"] == [] and [d["step_name"] for d in deadlines["deadlines"]] == ["one"]
    assert client.get("/api/v1/timers", params={"saga_id": plain}).json()["total"] == 0
    assert client.get("/api/v1/timers", params={"due": "true"}).json()["timers"] == []
    assert len(client.get("/api/v1/timers", params={"limit": 1}).json()["timers"]) == 1
    items = client.get("/api/v1/timers", params={"item_id": "nope"}).json()
    assert items["total"] == 0 and items["deadlines"] == []

    for params, path in (({"kind": "nope"}, "kind"), ({"limit": 0}, "limit"), ({"due": "maybe"}, "due")):
        bad = client.get("/api/v1/timers", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["error"]["details"][0]["path"].removeprefix("query.") == path, params


def test_a_tenants_token_may_not_list_timers(client: TestClient) -> None:
    from orchestrator.work.tokens import create_token

    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        token = create_token(
            session, principal_type=PrincipalType.user, principal_id="ann", tenant="acme", scopes=["sagas:read"]
        )
    refused = client.get("/api/v1/timers", headers={"Authorization": f"Bearer {token.secret}"})
    assert refused.status_code == 403 and "all-tenant token" in refused.json()["error"]["message"]
    assert client.get("/api/v1/timers", headers={"Authorization": "Bearer wy_nope"}).status_code == 401
