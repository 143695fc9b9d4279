"""POST /api/v1/sagas/batch on a real database and broker: every entry answered on its own, in
order; the sagas it starts written together and their first steps published; the limits, the
scopes and the tenants of a single submit; a key taken by a concurrent submit."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text

from models.base import utcnow
from models.principal import PrincipalType
from models.tables import OUTBOX, SAGAS, SagaRun
from orchestrator.sagas.submit import input_hash
from orchestrator.work.tokens import create_token
from tests.conftest import BACKENDS
from tests.integration.harness import admin_client
from tests.integration.templates import REVIEW_FIRST, REVIEW_STEP, THREE_STEPS
from tests.support import RedisTarget, eventually

ADMIN = "test-admin-token"
BATCH = "/api/v1/sagas/batch"


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path, clean_redis: RedisTarget) -> Iterator[TestClient]:
    with admin_client(str(request.param), tmp_path, clean_redis, ADMIN, [THREE_STEPS]) as test_client:
        yield test_client


def wiring(client: TestClient) -> Any:
    return client.app.state.wiring  # type: ignore[attr-defined]


def saga_count(client: TestClient) -> int:
    with wiring(client).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(SagaRun)) or 0)


def dispatched(client: TestClient, redis: RedisTarget) -> int:
    """First steps on the broker: the queue of it.three's first step, as a worker would read it."""
    return int(redis.client().llen("cap.alpha"))


def saga(tag: str, key: str | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"template": "it.three", "input": {"tag": tag}, **fields}
    if key is not None:
        entry["idempotence_key"] = key
    return entry


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    answered = body["results"]
    assert [r["index"] for r in answered] == list(range(len(answered)))
    statuses = [r["status"] for r in answered]
    assert (body["created"], body["existing"], body["refused"]) == (
        statuses.count(202),
        statuses.count(200),
        sum(s >= 400 for s in statuses),
    )
    for r in answered:
        assert (r["saga"] is None) == (r["error"] is not None) == (r["status"] >= 400), r
    return list(answered)


def test_a_batch_starts_every_saga_in_order_and_publishes_their_first_steps(
    client: TestClient, clean_redis: RedisTarget
) -> None:
    before, queued = saga_count(client), dispatched(client, clean_redis)
    answered = results(client.post(BATCH, json={"sagas": [saga(f"t{i}", f"order-{i}") for i in range(5)]}))
    assert [r["status"] for r in answered] == [202] * 5
    assert saga_count(client) == before + 5
    assert dispatched(client, clean_redis) == queued + 5
    # Published, so their outbox rows go (on a short timer; now here).
    wiring(client).dispatcher.flush()
    with wiring(client).sessions() as session:
        assert session.scalar(select(func.count()).select_from(OUTBOX)) == 0
    for i, result in enumerate(answered):
        assert result["saga"]["idempotence_key"] == f"order-{i}" and result["saga"]["state"] == "running"
        full = client.get(f"/api/v1/sagas/{result['saga']['id']}").json()
        assert full["input"] == {"tag": f"t{i}"}
        assert [s["state"] for s in full["steps"]] == ["running", "pending", "pending"]
        assert [(a["step_name"], a["outcome"]) for a in full["attempts"]] == [("one", "running")]
        # The summary answered is the saga as it reads back.
        assert {k: full[k] for k in result["saga"]} == result["saga"]


def test_each_entry_is_answered_on_its_own_and_a_refused_one_writes_nothing(
    client: TestClient, clean_redis: RedisTarget
) -> None:
    first = client.post("/api/v1/sagas", json=saga("a", "seen"))
    assert first.status_code == 202
    before, queued = saga_count(client), dispatched(client, clean_redis)
    answered = results(
        client.post(
            BATCH,
            json={
                "sagas": [
                    saga("ok-1"),
                    {"template": "nope", "input": {}},
                    saga("bad", input={"tag": 5}),
                    {"input": {"tag": "x"}},
                    saga("x", surprise=1),
                    saga("a", "seen"),
                    saga("b", "seen"),
                    saga("ok-2", version="9.9.9"),
                    saga("ok-3", "fresh"),
                ]
            },
        )
    )
    assert [r["status"] for r in answered] == [202, 404, 422, 422, 422, 200, 409, 404, 202]
    errors = {i: r["error"] for i, r in enumerate(answered) if r["error"] is not None}
    assert errors[1]["code"] == "not_found" and "nope" in errors[1]["message"]
    assert errors[7]["code"] == "not_found" and "9.9.9" in errors[7]["message"]
    # The single endpoint's error documents, their field paths under sagas.<index>.
    assert [d["path"] for d in errors[2]["details"]] == ["sagas.2.input.tag"]
    assert [d["path"] for d in errors[3]["details"]] == ["sagas.3.template"]
    assert [d["path"] for d in errors[4]["details"]] == ["sagas.4.surprise"]
    assert {errors[i]["code"] for i in (2, 3, 4)} == {"invalid_input"}
    assert errors[6]["code"] == "conflict" and [d["path"] for d in errors[6]["details"]] == ["sagas.6.idempotence_key"]
    assert answered[5]["saga"]["id"] == first.json()["id"]
    assert saga_count(client) == before + 2
    assert dispatched(client, clean_redis) == queued + 2


def test_two_entries_with_one_key_are_one_saga_or_a_conflict(client: TestClient) -> None:
    before = saga_count(client)
    answered = results(
        client.post(BATCH, json={"sagas": [saga("same", "twice"), saga("same", "twice"), saga("other", "twice")]})
    )
    assert [r["status"] for r in answered] == [202, 200, 409]
    assert answered[0]["saga"] == answered[1]["saga"]
    assert answered[2]["error"]["details"][0]["saga_id"] == answered[0]["saga"]["id"]
    assert saga_count(client) == before + 1
    # A refused entry's key is free for a later entry of the same batch.
    answered = results(client.post(BATCH, json={"sagas": [saga("bad", "later", input={}), saga("good", "later")]}))
    assert [r["status"] for r in answered] == [422, 202]


def test_a_batch_sent_again_answers_every_saga_it_started(client: TestClient, clean_redis: RedisTarget) -> None:
    body = {"sagas": [saga(f"t{i}", f"again-{i}") for i in range(20)]}
    first = results(client.post(BATCH, json=body))
    before, queued = saga_count(client), dispatched(client, clean_redis)
    again = results(client.post(BATCH, json=body))
    assert [r["status"] for r in again] == [200] * 20
    assert [r["saga"] for r in again] == [r["saga"] for r in first]
    assert (saga_count(client), dispatched(client, clean_redis)) == (before, queued)


def test_a_batch_holds_1_to_1000_sagas_within_the_request_size_limit(client: TestClient) -> None:
    before = saga_count(client)
    for sagas, path in (([], "body.sagas"), ([saga(str(i)) for i in range(1001)], "body.sagas"), ([5], "body.sagas.0")):
        response = client.post(BATCH, json={"sagas": sagas})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_input"
        assert path in [d["path"] for d in response.json()["error"]["details"]]
    too_big = {"sagas": [saga("x" * 1100, f"big-{i}") for i in range(1000)]}
    assert client.post(BATCH, json=too_big).status_code == 413
    assert saga_count(client) == before
    answered = results(client.post(BATCH, json={"sagas": [saga(str(i), f"k{i}") for i in range(1000)]}))
    assert {r["status"] for r in answered} == {202}
    assert saga_count(client) == before + 1000


def test_a_batch_needs_the_submit_scope_and_keeps_to_the_tokens_tenant(client: TestClient) -> None:
    with wiring(client).sessions.begin() as session:
        reader, acme, beta = (
            create_token(session, principal_type=PrincipalType.user, principal_id=who, tenant=tenant, scopes=scopes)
            for who, tenant, scopes in (
                ("reader", "acme", ["sagas:read"]),
                ("acme-ops", "acme", ["sagas:read", "sagas:write"]),
                ("beta-ops", "beta", ["sagas:read", "sagas:write"]),
            )
        )
    body = {"sagas": [saga("a", "k")]}
    before = saga_count(client)
    assert client.post(BATCH, json=body, headers={"Authorization": ""}).status_code == 401
    refused = client.post(BATCH, json=body, headers={"Authorization": f"Bearer {reader.secret}"})
    assert refused.status_code == 403 and "sagas:write" in refused.json()["error"]["message"]
    assert saga_count(client) == before

    as_acme = {"Authorization": f"Bearer {acme.secret}"}
    answered = results(client.post(BATCH, json={"sagas": [saga("a", "k"), saga("b", tenant="beta")]}, headers=as_acme))
    assert [r["status"] for r in answered] == [202, 403]
    assert answered[0]["saga"]["tenant"] == "acme" and answered[1]["error"]["code"] == "forbidden"
    # Keys are a tenant's own: beta's "k" is a saga of its own, acme's is found again.
    as_beta = {"Authorization": f"Bearer {beta.secret}"}
    (theirs,) = results(client.post(BATCH, json={"sagas": [saga("other input", "k")]}, headers=as_beta))
    assert theirs["status"] == 202 and theirs["saga"]["tenant"] == "beta"
    (ours,) = results(client.post(BATCH, json={"sagas": [saga("a", "k")]}, headers=as_acme))
    assert ours["status"] == 200 and ours["saga"]["id"] == answered[0]["saga"]["id"]
    # Another tenant's saga is not found through the API.
    assert client.get(f"/api/v1/sagas/{theirs['saga']['id']}", headers=as_acme).status_code == 404
    # An operator's all-tenant token names the tenant of each entry.
    answered = results(
        client.post(BATCH, json={"sagas": [saga("c", tenant="acme"), saga("d", tenant="beta"), saga("e")]})
    )
    assert [r["saga"]["tenant"] for r in answered] == ["acme", "beta", "*"]


def test_a_batch_of_sagas_that_start_by_waiting_on_work_items(client: TestClient) -> None:
    review = {**REVIEW_FIRST, "steps": [REVIEW_STEP, THREE_STEPS["steps"][2]]}
    registered = client.post("/api/v1/templates", json=review)
    assert registered.status_code == 201, registered.text
    entries = [{"template": "it.review_first", "input": {"tag": f"r{i}"}, "tenant": "acme"} for i in range(3)]
    answered = results(client.post(BATCH, json={"sagas": entries}))
    for i, result in enumerate(answered):
        full = client.get(f"/api/v1/sagas/{result['saga']['id']}").json()
        assert [(w["title"], w["tenant"], w["status"]) for w in full["work_items"]] == [
            (f"Review r{i}", "acme", "todo")
        ]


def test_a_key_taken_while_the_batch_runs_is_answered_with_that_saga(client: TestClient) -> None:
    """A concurrent submit commits a key between the batch's lookup and its insert: the batch's
    transaction fails on the key and is done again, and the entry is answered as existing."""
    engine = wiring(client).engine
    now = utcnow()
    taken = {
        "id": str(uuid.uuid4()),
        "tenant": "*",
        "template_name": "it.three",
        "template_version": "1.0.0",
        "state": "running",
        "input": {"tag": "raced"},
        "input_hash": input_hash("it.three", {"tag": "raced"}),
        "idempotence_key": "raced",
        "results": {},
        "sla_breach_count": 0,
        "sla_events": [],
        "created_at": now,
        "updated_at": now,
    }
    answer: dict[str, Any] = {}
    batch = threading.Thread(
        target=lambda: answer.update(
            response=client.post(BATCH, json={"sagas": [saga("raced", "raced"), saga("other", "not raced")]})
        )
    )
    with wiring(client).sessions.begin() as session:
        session.execute(insert(SAGAS), [taken])
        batch.start()
        if engine.dialect.name == "postgresql":
            # The batch looked the key up (not committed yet: not there) and waits on it at its insert.
            holder = session.scalar(text("SELECT pg_backend_pid()"))

            def blocked() -> bool:
                with engine.connect() as conn:
                    query = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
                    return bool(conn.scalar(query, {"pid": holder}))

            eventually(blocked, timeout=30, what="the batch to wait for the taken key")
        # (On SQLite the batch waits for this transaction's write lock, and looks the key up after it.)
    batch.join(timeout=60)
    answered = results(answer["response"])
    assert [r["status"] for r in answered] == [200, 202]
    assert answered[0]["saga"]["id"] == taken["id"]
    with wiring(client).sessions() as session:
        keys = session.scalars(select(SagaRun.idempotence_key).where(SagaRun.idempotence_key.is_not(None)))
        assert sorted(keys) == ["not raced", "raced"]
