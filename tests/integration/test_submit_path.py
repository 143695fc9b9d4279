"""``POST /api/v1/sagas`` answered before FastAPI's router (orchestrator.api.submit_path): the
plain request takes that path, and every answer is the one the route gives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.principal import PrincipalType
from orchestrator.api import submit_path
from orchestrator.api.sagas import router
from orchestrator.api.submit_path import submit_route
from tests.conftest import BACKENDS
from tests.integration.harness import admin_client
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget

ADMIN = "test-admin-token"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)")


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests FastAPI's submit route handled."""
    route = submit_route(router.routes)
    handled: list[str] = []
    handle = route.handle

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        handled.append(scope["path"])
        await handle(scope, receive, send)

    monkeypatch.setattr(route, "handle", counted)
    return handled


def test_a_plain_submit_is_answered_before_the_router(client: TestClient, routed: list[str]) -> None:
    body = {"template": "it.three", "input": {"tag": "a"}, "idempotence_key": "plain-1"}
    first = client.post("/api/v1/sagas", json=body)
    assert first.status_code == 202 and routed == []
    # What the path leaves to the route: the header, a query, a body the model refuses.
    by_header = client.post(
        "/api/v1/sagas", json={"template": "it.three", "input": {"tag": "a"}}, headers={"Idempotency-Key": "plain-1"}
    )
    assert by_header.status_code == 200 and by_header.json()["id"] == first.json()["id"]
    assert client.post("/api/v1/sagas?x=1", json=body).status_code == 422
    assert client.post("/api/v1/sagas", json={**body, "surprise": 1}).status_code == 422
    assert routed == ["/api/v1/sagas"] * 3


def _shape(response: Any) -> tuple[int, str, str, str]:
    """Status, content type, and the body with its ids and times masked (two submits of one
    request differ only there)."""
    text = _TIME.sub("<time>", _UUID.sub("<id>", response.text)).replace("p-same", "<key>").replace("r-same", "<key>")
    return response.status_code, response.headers["content-type"], response.headers["content-length"], text


def test_the_path_answers_what_the_route_answers(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.work.tokens import create_token

    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        acme = create_token(
            session, principal_type=PrincipalType.user, principal_id="u", tenant="acme", scopes=["sagas:write"]
        ).secret
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"template": "it.three", "input": {"tag": "a"}}, None),
        ({"template": "it.three", "input": {"tag": "a"}, "idempotence_key": "{run}-same"}, None),
        ({"template": "it.three", "input": {"tag": "b"}, "idempotence_key": "{run}-same"}, None),  # a 409
        ({"template": "nope", "input": {}}, None),  # a 404
        ({"template": "it.three", "version": "9.9.9", "input": {"tag": "a"}}, None),  # a 404
        ({"template": "it.three", "input": {"tag": 5}}, None),  # a 422 naming input.tag
        ({"template": "it.three", "input": {"tag": "a"}, "tenant": "other"}, acme),  # a 403
        ({"template": "it.three", "input": {"tag": "a"}, "tenant": "acme"}, acme),
    ]

    def answers(run: str) -> list[tuple[int, str, str, str]]:
        shapes = []
        for body, token in cases:
            sent = {k: v.format(run=run) if isinstance(v, str) else v for k, v in body.items()}
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            shapes.append(_shape(client.post("/api/v1/sagas", json=sent, headers=headers)))
        return shapes

    by_path = answers("p")
    monkeypatch.setattr(submit_path, "_plain_submit", lambda scope: None)
    by_route = answers("r")
    assert [s[0] for s in by_path] == [202, 202, 409, 404, 404, 422, 403, 202]
    # Keys of the same length ("p-same", "r-same"): the answers are of the same length too.
    assert by_path == by_route


def test_an_unexpected_failure_goes_on_up_as_from_the_route(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit that fails with neither workyard's nor the database's error is not answered by
    the path: it goes on up, as from the route, through the request's span (marked an error)
    to the app's last handler, whose 500 is the same either way."""
    from orchestrator.api import sagas as sagas_api

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(sagas_api, "submit_saga", boom)
    unexpected = TestClient(client.app, raise_server_exceptions=False, headers=dict(client.headers))
    body = {"template": "it.three", "input": {"tag": "a"}}
    by_path = unexpected.post("/api/v1/sagas", json=body)
    monkeypatch.setattr(submit_path, "_plain_submit", lambda _scope: None)
    by_route = unexpected.post("/api/v1/sagas", json=body)
    assert by_path.status_code == by_route.status_code == 500
    assert (by_path.text, dict(by_path.headers)) == (by_route.text, dict(by_route.headers))
