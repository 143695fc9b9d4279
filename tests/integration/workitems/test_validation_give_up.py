"""A validator run that never answers is given up by its own durable timer, on SQLite and
PostgreSQL: a sync run fails with the reason (the gate lists it, asking again runs the check anew),
an async one fails and opens remediation as any failing async run does, and a run that answered
first is left as it answered. No worker consumes the validators' queue: the test answers for it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from models.base import utcnow
from orchestrator.service.timers import TimerService
from orchestrator.work.gates.validations import PENDING_GIVE_UP_S
from tests.integration.workitems.conftest import TokenFactory
from tests.integration.workitems.test_policy_gates import change, missing, register, to_review


def scanned(mode: str) -> dict[str, Any]:
    check = {"id": "scan", "kind": "security", "required": True}
    return {
        "id": "scanned",
        "checks": [{**check, "validator": {"handler": "scan", "capability": "nobody", "mode": mode}}],
        "gates": ["review->done"],
    }


def fire_timers_at(client: TestClient, at: datetime) -> int:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=lambda: at).tick()


def later() -> datetime:
    return utcnow() + timedelta(seconds=PENDING_GIVE_UP_S + 1)


def test_a_sync_run_that_never_answers_is_given_up_and_asking_again_runs_it_anew(
    client: TestClient, token: TokenFactory
) -> None:
    register(client, token, scanned("sync"))
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change("scanned"), headers=alice).json()["id"]
    runs = f"/api/v1/work-items/{item_id}/validations"
    first = client.post(runs, json={"check": "scan"}, headers=alice).json()
    assert first["state"] == "pending"
    # Before its time, its timer leaves it pending.
    fire_timers_at(client, utcnow() + timedelta(seconds=PENDING_GIVE_UP_S / 2))
    assert client.get(runs, headers=alice).json()[0]["state"] == "pending"

    assert fire_timers_at(client, later()) >= 1
    [run] = client.get(runs, headers=alice).json()
    assert (run["state"], run["error"]) == ("failed", f"given up: no answer within {PENDING_GIVE_UP_S:.0f} s")
    assert run["remediation_item_id"] is None and run["finished_at"] is not None
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=alice).json()
    [failed] = [e for e in history if e["action"] == "validation_failed"]
    assert failed["actor"] == "system" and failed["reason"].startswith("given up")
    to_review(client, alice, item_id)
    refused = client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=alice)
    assert ("validation", "checks.scan") in missing(refused)
    again = client.post(runs, json={"check": "scan"}, headers=alice)
    assert again.status_code == 202 and again.json()["id"] != first["id"]
    # The first run's timer fired once; the new run has a timer of its own, not due yet.
    fire_timers_at(client, utcnow() + timedelta(seconds=PENDING_GIVE_UP_S / 2))
    states = {r["id"]: r["state"] for r in client.get(runs, headers=alice).json()}
    assert states == {first["id"]: "failed", again.json()["id"]: "pending"}
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=alice).json()
    assert [e["action"] for e in history].count("validation_failed") == 1


def test_an_async_run_that_never_answers_opens_remediation_after_its_item_ended(
    client: TestClient, token: TokenFactory
) -> None:
    register(client, token, scanned("async"))
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change("scanned"), headers=alice).json()["id"]
    to_review(client, alice, item_id)
    passed = client.post(f"/api/v1/work-items/{item_id}/transition", json={"to": "done"}, headers=alice)
    assert passed.status_code == 200, passed.text  # an async check never holds the gate
    runs = f"/api/v1/work-items/{item_id}/validations"
    [pending] = client.get(runs, headers=alice).json()
    assert (pending["mode"], pending["state"]) == ("async", "pending")

    fire_timers_at(client, later())
    [run] = client.get(runs, headers=alice).json()
    assert run["state"] == "failed" and run["error"].startswith("given up")
    remediation = client.get(f"/api/v1/work-items/{run['remediation_item_id']}", headers=alice)
    assert remediation.status_code == 200 and remediation.json()["type"] == "remediation"
    assert item_id in remediation.json()["title"]


def test_a_run_that_answered_is_left_as_it_answered(client: TestClient, token: TokenFactory) -> None:
    register(client, token, scanned("sync"))
    alice = token("user:alice")
    item_id = client.post("/api/v1/work-items", json=change("scanned"), headers=alice).json()["id"]
    runs = f"/api/v1/work-items/{item_id}/validations"
    run_id = client.post(runs, json={"check": "scan"}, headers=alice).json()["id"]
    report = {
        "kind": "step_report",
        "saga_id": run_id,
        "step_index": 0,
        "phase": "forward",
        "attempt": 1,
        "outcome": "succeeded",
        "result": {"passed": True, "summary": "clean"},
        "worker": "scanner-1",
    }
    assert client.app.state.wiring.coordinator.handle([report]).applied == 1  # type: ignore[attr-defined]
    fire_timers_at(client, later())
    [run] = client.get(runs, headers=alice).json()
    assert (run["state"], run["error"]) == ("passed", None)
    history = client.get(f"/api/v1/work-items/{item_id}/history", headers=alice).json()
    assert [e["action"] for e in history if e["action"].startswith("validation_")] == [
        "validation_requested",
        "validation_passed",
    ]
