"""An agent's loop, pass after pass: claim-next hands out only work the caller can act on, a
lapsed holder's item can be resumed, heartbeats keep the claim's own TTL, retried completes and
fails answer as the first did, and a JSON body sent as a form (or untyped) is told what to send."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.base import utcnow
from tests.integration.workitems.conftest import Headers, TokenFactory, error, task
from tests.integration.workitems.test_claims import lapse

SUMMARIZE = {"type": "agent", "capability": "summarize"}


def create(client: TestClient, headers: Headers, **extra: Any) -> str:
    response = client.post("/api/v1/work-items", json=task(offer=SUMMARIZE, **extra), headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def claim_next(client: TestClient, headers: Headers, **body: Any) -> Any:
    response = client.post("/api/v1/queues/claim-next", json=body or None, headers=headers)
    assert response.status_code in (200, 204), response.text
    return None if response.status_code == 204 else response.json()


def call(client: TestClient, item: dict[str, Any], action: str, headers: Headers, **body: Any) -> Any:
    return client.post(
        f"/api/v1/work-items/{item['id']}/{action}", json={"lease_epoch": item["lease_epoch"], **body}, headers=headers
    )


@pytest.fixture
def people(token: TokenFactory) -> tuple[Headers, Headers, Headers]:
    """A creator, and two summarizing agents."""
    return (
        token("user:pm"),
        token("agent:a1", capabilities=["summarize"]),
        token("agent:a2", capabilities=["summarize"]),
    )


def test_claim_next_skips_an_item_the_agent_just_completed(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, agent, _ = people
    create(client, creator)
    item = claim_next(client, agent, ttl_s=120)
    assert call(client, item, "start", agent).status_code == 200
    done = call(client, item, "complete", agent, result={"summary": "ok"})
    assert done.status_code == 200 and done.json()["status"] == "review"
    # The second pass: the item in review is the reporter's to approve, not work for the agent.
    assert claim_next(client, agent, ttl_s=120) is None
    after = client.get(f"/api/v1/work-items/{item['id']}", headers=creator).json()
    assert after["claim"] is None and after["status"] == "review"


def test_claim_next_skips_items_waiting_on_open_dependencies(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, agent, _ = people
    first = create(client, creator, priority=10)
    second = create(client, creator, priority=90, dependencies=[first])
    # The urgent one waits on the other: the agent is handed what it can start now.
    item = claim_next(client, agent)
    assert item["id"] == first
    assert claim_next(client, agent) is None
    assert call(client, item, "start", agent).status_code == 200
    assert call(client, item, "complete", agent, result=1).status_code == 200
    approved = client.post(f"/api/v1/work-items/{first}/transition", json={"to": "done"}, headers=creator)
    assert approved.status_code == 200
    assert claim_next(client, agent)["id"] == second


def test_an_item_whose_holder_vanished_mid_work_is_resumed_by_the_next(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, first, second = people
    item_id = create(client, creator)
    held = claim_next(client, first, ttl_s=60)
    assert call(client, held, "start", first).json()["status"] == "in_progress"
    lapse(client, item_id)
    taken = claim_next(client, second, ttl_s=60)
    assert taken is not None and taken["id"] == item_id and taken["status"] == "in_progress"
    resumed = call(client, taken, "start", second)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "in_progress" and resumed.json()["claim"]["id"] == "a2"
    assert call(client, taken, "complete", second, result={"summary": "ok"}).json()["status"] == "review"
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=creator).json()
    assert [(e["action"], e["actor"]) for e in history] == [
        ("created", "user:pm"),
        ("claimed", "agent:a1"),
        ("started", "agent:a1"),
        ("lease_expired", "system"),
        ("claimed", "agent:a2"),
        ("resumed", "agent:a2"),
        ("completed", "agent:a2"),
    ]
    assert history[3]["details"]["status"] == "in_progress"


def test_a_retried_start_answers_as_the_first(client: TestClient, people: tuple[Headers, Headers, Headers]) -> None:
    creator, agent, _ = people
    create(client, creator)
    item = claim_next(client, agent)
    first, again = call(client, item, "start", agent), call(client, item, "start", agent)
    assert first.status_code == again.status_code == 200
    assert again.json()["status"] == "in_progress" and again.json()["version"] == first.json()["version"]


def test_a_heartbeat_keeps_the_claims_own_ttl(client: TestClient, people: tuple[Headers, Headers, Headers]) -> None:
    creator, agent, _ = people
    create(client, creator)
    item = claim_next(client, agent, ttl_s=240)
    beat = call(client, item, "heartbeat", agent)
    assert beat.status_code == 200
    expires = beat.json()["claim"]["lease_expires_at"]
    # The server default is 30 s in these tests: the beat must not pull a 240 s lease in to it.
    assert expires > (utcnow() + timedelta(seconds=200)).isoformat()
    shorter = call(client, item, "heartbeat", agent, ttl_s=90).json()["claim"]["lease_expires_at"]
    assert shorter < (utcnow() + timedelta(seconds=100)).isoformat()
    # A beat that names a TTL sets it for the beats after it too.
    kept = call(client, item, "heartbeat", agent).json()["claim"]["lease_expires_at"]
    assert (utcnow() + timedelta(seconds=80)).isoformat() < kept < (utcnow() + timedelta(seconds=100)).isoformat()


def test_a_retried_complete_answers_as_the_first(client: TestClient, people: tuple[Headers, Headers, Headers]) -> None:
    creator, agent, other = people
    create(client, creator)
    item = claim_next(client, agent)
    call(client, item, "start", agent)
    first = call(client, item, "complete", agent, result={"summary": "ok"})
    again = call(client, item, "complete", agent, result={"summary": "ok"})
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    # Another result under the same epoch is not a retry, and another agent's epoch is not ours.
    changed = call(client, item, "complete", agent, result={"summary": "different"})
    assert changed.status_code == 409 and "completed" in error(changed)["message"]
    assert call(client, item, "complete", other, result={"summary": "ok"}).status_code == 409
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=creator).json()
    assert [e["action"] for e in history].count("completed") == 1


def test_a_retried_fail_answers_as_the_first(client: TestClient, people: tuple[Headers, Headers, Headers]) -> None:
    creator, agent, _ = people
    create(client, creator)
    item = claim_next(client, agent)
    call(client, item, "start", agent)
    first = call(client, item, "fail", agent, reason="source is gone")
    again = call(client, item, "fail", agent, reason="source is gone")
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    assert call(client, item, "fail", agent, reason="another").status_code == 409


def test_a_json_body_sent_as_a_form_is_a_415_that_says_what_to_send(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, agent, _ = people
    create(client, creator)
    # What `curl -d '{"ttl_s": 120}'` sends: the body is JSON, the content type says it is a form.
    form = client.post(
        "/api/v1/queues/claim-next",
        content=b'{"ttl_s": 120}',
        headers={**agent, "content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    body = error(form)
    assert body["code"] == "unsupported_media_type" and "content-type: application/json" in body["message"]
    assert body["details"][0]["path"] == "content-type"
    # No content type at all is refused the same way (the framework would not read the body).
    bare = client.post("/api/v1/queues/claim-next", content=b'{"ttl_s": 120}', headers=agent)
    assert bare.status_code == 415 and "has no content-type" in error(bare)["message"]
    # Nothing was claimed by the refused calls.
    claimed = client.post("/api/v1/queues/claim-next", json={"ttl_s": 120}, headers=agent)
    assert claimed.status_code == 200 and claimed.json()["lease_epoch"] == 1
    # A JSON media type with a suffix or parameters is JSON too.
    beat = client.post(
        f"/api/v1/work-items/{claimed.json()['id']}/heartbeat",
        content=b'{"lease_epoch": 1}',
        headers={**agent, "content-type": "application/json; charset=utf-8"},
    )
    assert beat.status_code == 200


def test_an_offer_to_a_custom_scope_reaches_the_people_holding_it(client: TestClient, token: TokenFactory) -> None:
    creator = token("user:pm")
    approver = token("user:cfo", scopes=["work:read", "work:claim", "finance:approve"])
    clerk = token("user:clerk", scopes=["work:read", "work:claim"])
    made = client.post(
        "/api/v1/work-items", json=task(offer={"type": "human", "scope": "finance:approve"}), headers=creator
    )
    assert made.status_code == 201, made.text
    assert client.post("/api/v1/queues/claim-next", json={}, headers=clerk).status_code == 204
    taken = client.post("/api/v1/queues/claim-next", json={}, headers=approver)
    assert taken.status_code == 200 and taken.json()["id"] == made.json()["id"]


@pytest.mark.parametrize(
    ("scope", "message"),
    [("work:cliam", "workyard's work: scopes are"), ("Finance", "a custom scope looks like <namespace>:<name>")],
)
def test_a_misspelt_or_malformed_offer_scope_is_a_422(
    client: TestClient, token: TokenFactory, scope: str, message: str
) -> None:
    refused = client.post(
        "/api/v1/work-items", json=task(offer={"type": "human", "scope": scope}), headers=token("user:pm")
    )
    assert refused.status_code == 422
    detail = error(refused)["details"][0]
    assert detail["path"] == "offer.scope" and message in detail["message"], detail


def test_an_item_stored_with_a_free_form_offer_scope_still_reads_back(client: TestClient, token: TokenFactory) -> None:
    # Before custom scopes had a form, an offer's scope was any text: such items must still read.
    from models.work_tables import WorkItem
    from tests.integration.workitems.conftest import sessions

    creator = token("user:pm")
    item_id = client.post("/api/v1/work-items", json=task(), headers=creator).json()["id"]
    with sessions(client).begin() as session:
        row = session.get(WorkItem, item_id)
        assert row is not None
        row.offer_scope = "approvers"
    read = client.get(f"/api/v1/work-items/{item_id}", headers=creator)
    assert read.status_code == 200 and read.json()["offer"]["scope"] == "approvers"
    assert client.get("/api/v1/work-items", headers=creator).status_code == 200


def test_claim_next_does_not_hand_out_a_paused_item(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, agent, _ = people
    item_id = create(client, creator)
    blocked = client.post(
        f"/api/v1/work-items/{item_id}/transition",
        json={"to": "blocked", "reason": "waiting on legal"},
        headers=creator,
    )
    assert blocked.status_code == 200
    # Blocked is where an SLA's pause parks an item too: waiting on something, not work to hand out.
    assert claim_next(client, agent) is None
    assert (
        client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "todo"}, headers=creator).status_code == 200
    )
    assert claim_next(client, agent)["id"] == item_id


def test_a_complete_sent_again_after_the_item_was_sent_back_is_no_retry(
    client: TestClient, people: tuple[Headers, Headers, Headers]
) -> None:
    creator, agent, _ = people
    create(client, creator)
    item = claim_next(client, agent)
    call(client, item, "start", agent)
    assert call(client, item, "complete", agent, result=1).json()["status"] == "review"
    back = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "in_progress"}, headers=creator)
    assert back.status_code == 200
    # The reporter sent it back: the old completion is not the item's state any more.
    again = call(client, item, "complete", agent, result=1)
    assert again.status_code == 409, again.text
