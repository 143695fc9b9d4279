"""Every shipped lifecycle through the API: each allowed move succeeds, every other one is
refused with the allowed next statuses, and the audit trail records the moves in order."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from models.lifecycles import CANONICAL, LIFECYCLES, Lifecycle, is_terminal, next_statuses
from models.work_tables import WorkItem
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions, task

REMEDIATION = {
    "type": "remediation",
    "title": "roll the bad config back",
    "payload": {"incidentRef": "INC-7", "startAt": "2026-11-22T10:00:00Z", "remediationPlan": "revert"},
}


def body_for(lifecycle: Lifecycle) -> dict[str, Any]:
    if lifecycle is CANONICAL:
        return REMEDIATION
    if lifecycle.name in ("backlog", "chat"):
        return task(origin=lifecycle.name)
    return task()


def force_status(client: TestClient, item_id: str, lifecycle: Lifecycle, status: str) -> None:
    with sessions(client).begin() as session:
        session.execute(
            update(WorkItem)
            .where(WorkItem.id == item_id)
            .values(status=status, is_open=not is_terminal(lifecycle, status))
        )


@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_every_pair_of_statuses(client: TestClient, token: TokenFactory, name: str) -> None:
    lifecycle = LIFECYCLES[name]
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=body_for(lifecycle), headers=alice).json()
    if name == "step":
        # Only a saga opens items with this lifecycle; here one is made by hand.
        with sessions(client).begin() as session:
            session.execute(update(WorkItem).where(WorkItem.id == item["id"]).values(lifecycle="step", status="todo"))
        item = client.get(f"/api/v1/work-items/{item['id']}", headers=alice).json()
    assert item["lifecycle"] == name and item["status"] == lifecycle.initial
    tried = 0
    for source in lifecycle.statuses:
        allowed = next_statuses(lifecycle, source)
        for target in lifecycle.statuses:
            force_status(client, item["id"], lifecycle, source)
            response = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": target}, headers=alice)
            tried += 1
            if target in allowed:
                assert response.status_code == 200, (source, target, response.json())
                assert response.json()["status"] == target
            else:
                assert response.status_code == 409, (source, target, response.json())
                assert error(response)["details"][0]["allowed"] == allowed
                assert f"from {source} to {target}" in error(response)["message"]
    assert tried == len(lifecycle.statuses) ** 2


def test_allowed_next_statuses_are_readable(client: TestClient, token: TokenFactory) -> None:
    alice = token("user:alice")
    item = client.post("/api/v1/work-items", json=task(origin="backlog"), headers=alice).json()
    force_status(client, item["id"], LIFECYCLES["backlog"], "pending_user_review")
    allowed = client.get(f"/api/v1/work-items/{item['id']}/transitions", headers=alice).json()
    assert allowed == {
        "status": "pending_user_review",
        "lifecycle": "backlog",
        "next": ["completed", "closed", "queued"],
        "terminal": False,
        "can_complete": True,
        "can_close": True,
        "can_send_back": True,
    }


def walk(client: TestClient, headers: Headers, item_id: str, path: list[str]) -> None:
    for status in path:
        response = client.post(
            f"/api/v1/work-items/{item_id}/transition", json={"to": status, "reason": f"to {status}"}, headers=headers
        )
        assert response.status_code == 200, response.json()


def test_the_audit_trail_records_every_move_in_order(client: TestClient, token: TokenFactory) -> None:
    alice, bob = token("user:alice"), token("user:bob")
    item = client.post("/api/v1/work-items", json=task(), headers=alice).json()
    path = ["in_progress", "blocked", "in_progress", "review", "in_progress", "review", "done"]
    walk(client, alice, item["id"], path[:3])
    walk(client, bob, item["id"], path[3:])
    history = client.get(f"/api/v1/work-items/{item['id']}/history", headers=alice).json()
    moves = [
        (e["actor"], e["from_status"], e["to_status"], e["reason"]) for e in history if e["action"] == "transition"
    ]
    froms = ["todo", *path[:-1]]
    actors = ["user:alice"] * 3 + ["user:bob"] * 4
    assert moves == [(a, f, t, f"to {t}") for a, f, t in zip(actors, froms, path, strict=True)]
    assert history[0]["action"] == "created" and history[0]["to_status"] == "todo"
    final = client.get(f"/api/v1/work-items/{item['id']}", headers=alice).json()
    assert final["status"] == "done" and final["completed_at"] is not None and final["started_at"] is not None
    # Terminal: nothing further, and the refusal says so.
    refused = client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "todo"}, headers=alice)
    assert refused.status_code == 409 and "none (the status is terminal)" in error(refused)["message"]
