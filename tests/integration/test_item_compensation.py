"""A work item's compensation plan run as a saga on a real stack (orchestrator, API and Celery
workers as subprocesses), on SQLite and PostgreSQL, with every message delivered once and twice:
the actions run in reverse order, each side effect once; the item goes done -> rolled_back; the
run document shows the steps and the compensation status; a compensation that gives up opens a
remediation item."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from models.work_tables import WorkItem
from tests.conftest import database_url
from tests.integration.harness import Harness, stack_settings
from tests.integration.templates import THREE_STEPS
from tests.support import RedisTarget, eventually

ADMIN = "it-admin-token"
ITEMS = "/api/v1/work-items"

STACKS = [
    pytest.param(
        (backend, twice),
        marks=[pytest.mark.postgres] if backend == "postgres" else [],
        id=f"{backend}-{'twice' if twice else 'once'}",
    )
    for backend in ("sqlite", "postgres")
    for twice in (False, True)
]


class Stack:
    def __init__(self, harness: Harness):
        self.h = harness
        self.api = httpx.Client(
            base_url=harness.settings.api_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
        )

    def item(self, item_id: str) -> dict[str, Any]:
        response = self.api.get(f"{ITEMS}/{item_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def done_item(self, tag: str, plan: dict[str, Any], **payload: Any) -> dict[str, Any]:
        """A task of tenant acme, with ``plan``, moved to done."""
        body = {
            "type": "task",
            "title": f"provision {tag}",
            "tenant": "acme",
            "payload": {"tag": tag, **payload},
            "compensation": plan,
        }
        response = self.api.post(ITEMS, json=body)
        assert response.status_code == 201, response.text
        item_id = response.json()["id"]
        for status in ("in_progress", "done"):
            moved = self.api.post(f"{ITEMS}/{item_id}/transition", json={"to": status})
            assert moved.status_code == 200, moved.text
        return self.item(item_id)

    def runs(self, item_id: str) -> list[dict[str, Any]]:
        response = self.api.get(f"{ITEMS}/{item_id}/runs")
        assert response.status_code == 200, response.text
        return list(response.json())


@pytest.fixture(scope="module", params=STACKS)
def stack(
    request: pytest.FixtureRequest, redis_target: RedisTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    backend, twice = request.param
    tmp = tmp_path_factory.mktemp("itemundo")
    for url in database_url(str(backend), tmp):
        settings = stack_settings(tmp, url, redis_target, admin_token=ADMIN, fault_duplicate_delivery=twice)
        harness = Harness(settings, redis_target, api=True)
        try:
            harness.start()
            harness.register(THREE_STEPS)  # registers the handlers the plans name (undo_one, undo_two)
            stack = Stack(harness)
            yield stack
            stack.api.close()
        finally:
            harness.stop()


def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _plan(**retry: int) -> dict[str, Any]:
    return {
        "steps": [
            {"actionId": "undo_one", "on": "failure_of", "targetStep": "one"},
            {"actionId": "undo_two", "on": "failure_of", "targetStep": "two"},
        ],
        "retryPolicy": {"maxRetries": 2, "backoffMs": 10, **retry},
    }


def test_an_items_compensation_runs_in_reverse_and_rolls_it_back(stack: Stack) -> None:
    tag = _tag()
    item = stack.done_item(tag, _plan())
    started = stack.api.post(
        f"{ITEMS}/{item['id']}/compensate", json={"reason": "order cancelled"}, headers={"Idempotency-Key": tag}
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["runId"]

    rolled = eventually(
        lambda: (i := stack.item(item["id"]))["status"] == "rolled_back" and i,
        timeout=60,
        what="the item to be rolled back",
    )
    assert rolled["completed_at"] is not None
    # Reverse order of the plan's listing, each side effect once (delivered twice or not).
    assert stack.h.effects(tag) == ["undo_two", "undo_one"]

    [run] = stack.runs(item["id"])
    assert run["runId"] == run_id and run["workItemId"] == item["id"] and run["kind"] == "compensation"
    assert run["compensationStatus"] == "completed" and run["state"] == "completed" and run["endedAt"]
    assert [(s["stepId"], s["status"]) for s in run["steps"]] == [("undo_two", "succeeded"), ("undo_one", "succeeded")]
    for step in run["steps"]:
        assert step["startedAt"] and step["endedAt"] and step["startedAt"] <= step["endedAt"]
        assert [(log["phase"], log["outcome"]) for log in step["logs"]] == [("forward", "succeeded")]
        assert step["logs"][0]["worker"]
    assert run["steps"][0]["endedAt"] <= run["steps"][1]["startedAt"]

    history = stack.api.get(f"{ITEMS}/{item['id']}/history").json()
    rolled_back = [e for e in history if e["action"] == "rolled_back"]
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in rolled_back] == [
        ("done", "rolled_back", f"saga:{run_id}")
    ]
    # A retry with the same key answers with the same run; compensating a rolled-back item is refused.
    again = stack.api.post(
        f"{ITEMS}/{item['id']}/compensate", json={"reason": "order cancelled"}, headers={"Idempotency-Key": tag}
    )
    assert again.status_code == 200 and again.json()["runId"] == run_id
    assert stack.api.post(f"{ITEMS}/{item['id']}/compensate").status_code == 409
    assert stack.h.effects(tag) == ["undo_two", "undo_one"]


def test_a_compensation_that_gives_up_opens_a_remediation_item(stack: Stack) -> None:
    tag = _tag()
    item = stack.done_item(tag, _plan(maxRetries=1), behaviour={"undo_one": {"fail_always": True}})
    started = stack.api.post(f"{ITEMS}/{item['id']}/compensate")
    assert started.status_code == 202, started.text

    def settled() -> dict[str, Any] | None:
        [run] = stack.runs(item["id"])
        return run if run["compensationStatus"] == "failed" else None

    run = eventually(settled, timeout=60, what="the compensation to give up")
    assert [(s["stepId"], s["status"]) for s in run["steps"]] == [("undo_two", "succeeded"), ("undo_one", "failed")]
    assert [log["outcome"] for log in run["steps"][1]["logs"]] == ["failed", "failed"]  # 1 try + 1 retry
    assert stack.h.effects(tag) == ["undo_two"]
    assert stack.item(item["id"])["status"] == "done"  # not rolled back: undo_one did not run

    def remediation() -> WorkItem | None:
        with stack.h.wiring.sessions() as session:
            found = session.scalars(select(WorkItem).where(WorkItem.type == "remediation")).all()
            return next((i for i in found if i.meta.get("follows") == item["id"]), None)

    opened = eventually(remediation, timeout=10, what="the remediation item")
    assert opened.tenant == "acme" and opened.status == "planned" and opened.payload["incidentRef"] == item["id"]
    history = stack.api.get(f"{ITEMS}/{item['id']}/history").json()
    actions = [e["action"] for e in history]
    assert "compensation_failed" in actions and "remediation_opened" in actions
    # A new compensation may be asked for once this one has ended. Each action's idempotence key is
    # the item's and the action's, so what the first run undid is not undone twice.
    again = stack.api.post(f"{ITEMS}/{item['id']}/compensate")
    assert again.status_code == 202, again.text
    eventually(
        lambda: [r["compensationStatus"] for r in stack.runs(item["id"])] == ["failed", "failed"],
        timeout=60,
        what="the second compensation to give up",
    )
    assert stack.h.effects(tag) == ["undo_two"]
