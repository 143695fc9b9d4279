"""``/api/v1/dead-letters`` on SQLite and PostgreSQL: an operator lists and reads dead letters,
replays one to the queue it came from (through the outbox, onto the real broker), and purges
one or many by filter with the count first; a tenant's token, or a token without the scope, is
refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from config import keys
from models.base import utcnow
from models.principal import PrincipalType
from models.tables import DeadLetter
from orchestrator.service.coordinator import dead_letter_row
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS
from tests.integration.harness import admin_client
from tests.support import RedisTarget, as_text

ADMIN = "test-admin-token-dead-letters"
REPORT = {"kind": "step_report", "saga_id": "s-1", "step_index": 0, "phase": "forward", "attempt": 1}
DISPATCH = {"saga_id": "s-2", "step_index": 1, "handler": "charge", "step": "charge"}


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, []) as test_client:
        yield test_client


def _letters(client: TestClient, *rows: tuple[str, str, Any]) -> list[int]:
    """Dead letters as the coordinator keeps them: (source, reason, body); their ids."""
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    now = utcnow()
    with wiring.sessions.begin() as session:
        letters = [dead_letter_row(source, reason, body, now) for source, reason, body in rows]
        session.add_all(letters)
        session.flush()
        return [letter.id for letter in letters]


def _count(client: TestClient) -> int:
    with client.app.state.wiring.sessions() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(DeadLetter)) or 0)


def _token(client: TestClient, tenant: str, *scopes: str) -> str:
    with client.app.state.wiring.sessions.begin() as session:  # type: ignore[attr-defined]
        return create_token(
            session, principal_type=PrincipalType.user, principal_id="u", tenant=tenant, scopes=scopes
        ).secret


def _queued(target: RedisTarget, queue: str) -> list[Any]:
    """The bodies of the messages waiting in ``queue`` on the broker (kombu's Redis envelope)."""
    bodies = []
    for raw in target.client().lrange(queue, 0, -1):
        envelope = json.loads(as_text(raw))
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        bodies.append(json.loads(body))
    return bodies


def test_list_pages_newest_first_and_show_has_the_whole_body(client: TestClient) -> None:
    assert client.get("/api/v1/dead-letters").json() == {"items": [], "next_cursor": None}
    long_body = {"kind": "step_report", "pad": "x" * 500}
    ids = _letters(
        client,
        (keys.ORCHESTRATOR_QUEUE, "malformed report: saga_id: Field required", long_body),
        ("cap.alpha", "malformed step dispatch: step: Field required", DISPATCH),
        ("cap.alpha", "undecodable task body", b"\xff\xfe not json"),
    )
    first = client.get("/api/v1/dead-letters", params={"limit": 2}).json()
    assert [r["id"] for r in first["items"]] == [ids[2], ids[1]]
    assert [r["replayable"] for r in first["items"]] == [False, True]
    rest = client.get("/api/v1/dead-letters", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    assert rest["items"][0]["body_preview"] == json.dumps(long_body)[:200]
    assert rest["items"][0]["body_chars"] == len(json.dumps(long_body))
    by_source = client.get("/api/v1/dead-letters", params={"source": "cap.alpha"}).json()
    assert [r["id"] for r in by_source["items"]] == [ids[2], ids[1]]

    shown = client.get(f"/api/v1/dead-letters/{ids[0]}").json()
    assert json.loads(shown["body"]) == long_body and shown["reason"].startswith("malformed report")
    missing = client.get("/api/v1/dead-letters/999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/dead-letters", params={"cursor": "nope"}).status_code == 422


def test_replay_sends_a_report_and_a_dispatch_to_their_queues_and_deletes_them(
    client: TestClient, clean_redis: RedisTarget
) -> None:
    report, dispatch, task_body, garbage = _letters(
        client,
        (keys.ORCHESTRATOR_QUEUE, "report could not be applied: KeyError", REPORT),
        ("cap.alpha", "malformed step dispatch", DISPATCH),
        # As a worker dead-letters a task it refused: Celery's [args, kwargs, embed].
        ("cap.beta", "unknown task 'workyard.stepx'", [[DISPATCH], {}, {"callbacks": None}]),
        (keys.ORCHESTRATOR_QUEUE, "undecodable message", b"\x00\xff"),
    )
    replayed = client.post(f"/api/v1/dead-letters/{report}/replay")
    assert replayed.status_code == 202 and replayed.json() == {"id": report, "queue": keys.ORCHESTRATOR_QUEUE}
    assert _queued(clean_redis, keys.ORCHESTRATOR_QUEUE) == [REPORT]

    assert client.post(f"/api/v1/dead-letters/{dispatch}/replay").json()["queue"] == "cap.alpha"
    assert client.post(f"/api/v1/dead-letters/{task_body}/replay").json()["queue"] == "cap.beta"
    for queue in ("cap.alpha", "cap.beta"):
        [celery_body] = _queued(clean_redis, queue)
        args, _kwargs, _embed = celery_body
        assert args == [DISPATCH]

    refused = client.post(f"/api/v1/dead-letters/{garbage}/replay")
    assert refused.status_code == 409 and "its body is not JSON" in refused.json()["error"]["message"]
    again = client.post(f"/api/v1/dead-letters/{report}/replay")
    assert again.status_code == 404
    assert [r["id"] for r in client.get("/api/v1/dead-letters").json()["items"]] == [garbage]
    with client.app.state.wiring.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_purge_one_or_by_filter_after_counting(client: TestClient) -> None:
    ids = _letters(
        client,
        ("cap.alpha", "malformed step dispatch: a", {"n": 1}),
        ("cap.alpha", "malformed step dispatch: b", {"n": 2}),
        ("cap.beta", "unknown task 'x'", {"n": 3}),
        (keys.ORCHESTRATOR_QUEUE, "malformed report", {"n": 4}),
    )
    assert client.delete(f"/api/v1/dead-letters/{ids[3]}").status_code == 204
    assert client.delete(f"/api/v1/dead-letters/{ids[3]}").status_code == 404

    where = {"source": "cap.alpha", "reason_contains": "malformed step"}
    counted = client.post("/api/v1/dead-letters/purge", json={"filter": where}).json()
    assert counted == {"matched": 2, "deleted": 0, "dry_run": True} and _count(client) == 3
    stale = client.post("/api/v1/dead-letters/purge", json={"filter": where, "dry_run": False, "expect": 3})
    assert stale.status_code == 409 and _count(client) == 3
    unsure = client.post("/api/v1/dead-letters/purge", json={"filter": where, "dry_run": False})
    assert unsure.status_code == 409 and _count(client) == 3
    done = client.post("/api/v1/dead-letters/purge", json={"filter": where, "dry_run": False, "expect": 2}).json()
    assert done == {"matched": 2, "deleted": 2, "dry_run": False}
    assert [r["id"] for r in client.get("/api/v1/dead-letters").json()["items"]] == [ids[2]]

    later = (utcnow() + timedelta(minutes=1)).isoformat()
    everything = client.post("/api/v1/dead-letters/purge", json={"filter": {"received_before": later}}).json()
    assert everything["matched"] == 1
    bad = client.post("/api/v1/dead-letters/purge", json={"filter": {"colour": "red"}})
    assert bad.status_code == 422


def test_only_an_all_tenant_token_with_the_scope_reaches_them(client: TestClient) -> None:
    [letter] = _letters(client, ("cap.alpha", "malformed step dispatch", DISPATCH))
    operator = _token(client, "*", "dead-letters:manage")
    tenants = _token(client, "acme", "dead-letters:manage")
    reader = _token(client, "*", "sagas:read")
    calls = [
        ("GET", "/api/v1/dead-letters"),
        ("GET", f"/api/v1/dead-letters/{letter}"),
        ("POST", "/api/v1/dead-letters/purge"),
        ("DELETE", f"/api/v1/dead-letters/{letter}"),
        ("POST", f"/api/v1/dead-letters/{letter}/replay"),
    ]
    for method, path in calls:
        body: dict[str, Any] | None = {"filter": {}} if path.endswith("purge") else None
        for token, why in ((tenants, "all-tenant token"), (reader, "dead-letters:manage")):
            refused = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 403 and why in refused.json()["error"]["message"], (method, path)
        assert client.request(method, path, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert _count(client) == 1
    listed = client.get("/api/v1/dead-letters", headers={"Authorization": f"Bearer {operator}"})
    assert [r["id"] for r in listed.json()["items"]] == [letter]
