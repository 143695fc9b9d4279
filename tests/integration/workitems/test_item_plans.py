"""The spec's item fields (RACI, related goals, risk assessment, templates applied), item-level
timeouts fired by the timer loop on a clock the test drives, ``failed -> remediation``, and the
compensate/run-document API without workers (the end to end with workers is in
tests/integration/test_item_compensation.py); on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.tables import Timer
from models.work_tables import WorkItem
from orchestrator.sagas.templates import parse_template, register_template
from orchestrator.service.timers import TimerService
from tests.integration.templates import THREE_STEPS
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions, task

ITEMS = "/api/v1/work-items"
ROUTING = ("work:read", "work:write", "work:claim", "routing:write")
PLAN = {
    "steps": [
        {"actionId": "undo_one", "on": "failure_of", "targetStep": "one"},
        {"actionId": "undo_two", "on": "failure_of", "targetStep": "two"},
    ],
    "retryPolicy": {"maxRetries": 2, "backoffMs": 10},
}
INVESTIGATION = {"scope": "db", "successCriteria": "p99 < 50ms", "evidenceRequirements": ["traces"]}


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def pm(token: TokenFactory) -> Headers:
    return token("user:pm", scopes=ROUTING)


@pytest.fixture
def templates(client: TestClient) -> None:
    """The tenant's saga template that registers the compensation handlers the plans name."""
    register_template(sessions(client), parse_template(THREE_STEPS), tenant="acme")


def create(client: TestClient, headers: Headers, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(ITEMS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def move(client: TestClient, headers: Headers, item_id: str, *statuses: str) -> dict[str, Any]:
    read: dict[str, Any] = {}
    for status in statuses:
        response = client.post(f"{ITEMS}/{item_id}/transition", json={"to": status}, headers=headers)
        assert response.status_code == 200, response.text
        read = dict(response.json())
    return read


def history(client: TestClient, headers: Headers, item_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"{ITEMS}/{item_id}/history", headers=headers).json())


def timers_of(client: TestClient, item_id: str) -> list[str]:
    with sessions(client)() as session:
        return sorted(session.scalars(select(Timer.kind).where(Timer.item_id == item_id)))


def loop(client: TestClient, clock: Clock) -> TimerService:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=clock)


def remediations_of(client: TestClient, item_id: str) -> list[WorkItem]:
    with sessions(client)() as session:
        found = session.scalars(select(WorkItem).where(WorkItem.type == "remediation")).all()
        return [i for i in found if i.meta.get("follows") == item_id]


# -- the spec's fields ---------------------------------------------------------------------


def test_the_specs_fields_are_kept_read_back_and_updated(client: TestClient, pm: Headers) -> None:
    body = task(
        raci={"responsible": ["agent:a1"], "accountable": "user:pm", "consulted": ["user:sec"], "informed": []},
        relatedGoals=["GOAL-FINSERV-001", "GOAL-OPS-7"],
        riskAssessment={"riskLevel": "HIGH", "mitigations": ["canary first"], "notes": "touches payments"},
        templatesApplied=[{"templateId": "pci-change", "version": "1.2.0"}],
        timeoutMs=60_000,
        overall_timeout_ms=3_600_000,
    )
    item = create(client, pm, body)
    assert item["raci"] == {
        "responsible": ["agent:a1"],
        "accountable": "user:pm",
        "consulted": ["user:sec"],
        "informed": [],
    }
    assert item["related_goals"] == ["GOAL-FINSERV-001", "GOAL-OPS-7"]
    assert item["risk_assessment"] == {
        "risk_level": "HIGH",
        "mitigations": ["canary first"],
        "notes": "touches payments",
    }
    assert item["templates_applied"] == [{"template_id": "pci-change", "version": "1.2.0"}]
    assert (item["timeout_ms"], item["overall_timeout_ms"]) == (60_000, 3_600_000)
    assert client.get(f"{ITEMS}/{item['id']}", headers=pm).json() == item
    # The overall timeout is armed at creation; the execution timeout waits for the start.
    assert timers_of(client, item["id"]) == ["item_overall_timeout"]

    patched = client.patch(
        f"{ITEMS}/{item['id']}",
        json={"related_goals": [], "raci": None, "risk_assessment": {"risk_level": "LOW"}, "overall_timeout_ms": None},
        headers=pm,
    ).json()
    assert patched["related_goals"] == [] and patched["raci"] is None
    assert patched["risk_assessment"] == {"risk_level": "LOW", "mitigations": [], "notes": None}
    assert patched["overall_timeout_ms"] is None and timers_of(client, item["id"]) == []

    # A retry of the create with the same key and body answers with the first item.
    keyed = task(relatedGoals=["GOAL-A-1"], idempotence_key="k-1")
    first = create(client, pm, keyed)
    again = client.post(ITEMS, json=keyed, headers=pm)
    assert again.status_code == 200 and again.json()["id"] == first["id"]


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"raci": {"responsible": ["bob"]}}, "raci.responsible.0"),
    ({"raci": {"responsible": ["user:a", "user:a"]}}, "raci.responsible"),
    ({"raci": {"accountable": "team:x"}}, "raci.accountable"),
    ({"raci": {"owner": "user:a"}}, "raci.owner"),
    ({"related_goals": ["goal-1"]}, "related_goals.0"),
    ({"relatedGoals": ["GOAL-1", "GOAL-1"]}, "related_goals"),
    ({"related_goals": "GOAL-1"}, "related_goals"),
    ({"risk_assessment": {"risk_level": "EXTREME"}}, "risk_assessment.risk_level"),
    ({"riskAssessment": {"mitigations": ["x"]}}, "risk_assessment.risk_level"),
    ({"risk_assessment": {"riskLevel": "LOW", "risk_level": "LOW"}}, "risk_assessment"),
    ({"templates_applied": [{"template_id": "pci", "version": "1.0"}]}, "templates_applied.0.version"),
    ({"templates_applied": [{"template_id": "pci", "version": "1.0.0+b1"}]}, "templates_applied.0.version"),
    ({"templatesApplied": [{"version": "1.0.0"}]}, "templates_applied.0.template_id"),
    ({"timeout_ms": 0}, "timeout_ms"),
    ({"timeoutMs": "soon"}, "timeout_ms"),
    ({"overall_timeout_ms": 10**13}, "overall_timeout_ms"),
    ({"compensation": {"steps": []}}, "compensation.steps"),
    (
        {"compensation": {"steps": [{"actionId": "undo_one", "on": "sometimes", "targetStep": "one"}]}},
        "compensation.steps.0.on",
    ),
    (
        {"compensation": {"steps": [{"actionId": "undo_one", "on": "any_failure", "targetStep": "1 bad"}]}},
        "compensation.steps.0.target_step",
    ),
    ({"compensation": {"steps": [{"on": "any_failure", "targetStep": "*"}]}}, "compensation.steps.0.action_id"),
    (
        {
            "compensation": {
                "steps": [{"actionId": "x", "on": "any_failure", "targetStep": "*"}],
                "retryPolicy": {"maxRetries": -1},
            }
        },
        "compensation.retry_policy.max_retries",
    ),
    # Known only to the saga templates of the tenant: a handler none of them names is refused.
    (
        {"compensation": {"steps": [{"actionId": "drop_tables", "on": "any_failure", "targetStep": "*"}]}},
        "compensation.steps.0.action_id",
    ),
    # A step's forward handler is no undo: running it would start a saga's side effect.
    (
        {"compensation": {"steps": [{"actionId": "one", "on": "any_failure", "targetStep": "*"}]}},
        "compensation.steps.0.action_id",
    ),
    (
        {"compensation": {"steps": [{"actionId": "undo_one", "on": "failure_of", "targetStep": "four"}]}},
        "compensation.steps.0.target_step",
    ),
]


def paths(response: Any) -> list[str]:
    # Request validation names a field under body.; the checks made after it name it bare.
    return [d["path"].removeprefix("body.") for d in error(response)["details"]]


def test_a_bad_field_is_a_422_naming_it_and_writes_nothing(client: TestClient, pm: Headers, templates: None) -> None:
    item = create(client, pm, task())
    for extra, path in BAD_FIELDS:
        before = counts(client)
        response = client.post(ITEMS, json=task(**extra), headers=pm)
        assert response.status_code == 422, response.text
        assert path in paths(response), (extra, response.text)
        assert counts(client) == before
        # And on an update.
        response = client.patch(f"{ITEMS}/{item['id']}", json=extra, headers=pm)
        assert response.status_code == 422, response.text
        assert path in paths(response), (extra, response.text)
        assert counts(client) == before
        assert client.get(f"{ITEMS}/{item['id']}", headers=pm).json() == item


# -- item-level timeouts --------------------------------------------------------------------


def test_the_overall_timeout_fails_an_item_from_its_creation(client: TestClient, pm: Headers) -> None:
    item = create(
        client, pm, {"type": "investigation", "title": "slow", "payload": INVESTIGATION, "overall_timeout_ms": 1000}
    )
    move(client, pm, item["id"], "in_progress")
    created = datetime.fromisoformat(item["created_at"])
    clock = Clock(created + timedelta(milliseconds=999))
    timers = loop(client, clock)
    assert timers.tick() == 0
    clock.now = created + timedelta(milliseconds=1000)
    assert timers.tick() == 1
    read = client.get(f"{ITEMS}/{item['id']}", headers=pm).json()
    assert (read["status"], read["reason"]) == ("failed", "overall_timeout")
    [event] = [e for e in history(client, pm, item["id"]) if e["action"] == "timed_out"]
    assert (event["actor"], event["from_status"], event["to_status"]) == ("system", "in_progress", "failed")
    assert event["details"] == {"limit": "overall_timeout", "overall_timeout_ms": 1000}
    # failed -> remediation: the canonical item's failure opened one.
    [remediation] = remediations_of(client, item["id"])
    assert remediation.payload["incidentRef"] == item["id"] and remediation.tenant == "acme"
    assert timers_of(client, item["id"]) == []


def test_the_execution_timeout_runs_from_the_start_and_a_paused_item_is_not_spared(
    client: TestClient, pm: Headers
) -> None:
    item = create(client, pm, task(timeout_ms=5000))
    assert timers_of(client, item["id"]) == []  # not started: no clock yet
    started = move(client, pm, item["id"], "in_progress", "blocked")
    assert timers_of(client, item["id"]) == ["item_timeout"]
    start = datetime.fromisoformat(started["started_at"])
    clock = Clock(start + timedelta(milliseconds=4999))
    timers = loop(client, clock)
    assert timers.tick() == 0
    clock.now = start + timedelta(milliseconds=5000)
    assert timers.tick() == 1
    read = client.get(f"{ITEMS}/{item['id']}", headers=pm).json()
    # A task's lifecycle fails into cancelled; the reason says why.
    assert (read["status"], read["reason"]) == ("cancelled", "timeout")


def test_the_due_date_fails_an_item_and_an_update_moves_it(client: TestClient, pm: Headers) -> None:
    due = datetime.now().astimezone() + timedelta(hours=1)
    item = create(client, pm, task(dueAt=due.isoformat()))
    assert timers_of(client, item["id"]) == ["item_due"]
    later = due + timedelta(hours=1)
    patched = client.patch(f"{ITEMS}/{item['id']}", json={"due_at": later.isoformat()}, headers=pm)
    assert patched.status_code == 200
    clock = Clock(due + timedelta(minutes=1))
    timers = loop(client, clock)
    assert timers.tick() == 0  # the old due time is gone
    clock.now = later
    assert timers.tick() == 1
    read = client.get(f"{ITEMS}/{item['id']}", headers=pm).json()
    assert (read["status"], read["reason"]) == ("cancelled", "due")


def test_an_item_that_ends_stops_its_clocks_and_one_that_cannot_fail_yet_is_audited(
    client: TestClient, pm: Headers
) -> None:
    done = create(client, pm, task(overall_timeout_ms=1000, timeout_ms=1000))
    move(client, pm, done["id"], "in_progress", "done")
    assert timers_of(client, done["id"]) == []
    planned = create(
        client, pm, {"type": "investigation", "title": "x", "payload": INVESTIGATION, "overall_timeout_ms": 1000}
    )
    clock = Clock(datetime.fromisoformat(planned["created_at"]) + timedelta(seconds=2))
    assert loop(client, clock).tick() == 1
    read = client.get(f"{ITEMS}/{planned['id']}", headers=pm).json()
    assert read["status"] == "planned"  # the canonical lifecycle fails only started work
    [event] = [e for e in history(client, pm, planned["id"]) if e["action"] == "timeout_refused"]
    assert event["reason"] == "overall_timeout; planned cannot be failed"
    assert client.get(f"{ITEMS}/{done['id']}", headers=pm).json()["status"] == "done"


# -- failed -> remediation ------------------------------------------------------------------


def test_a_failed_item_opens_a_remediation_item_routed_by_the_rules(client: TestClient, pm: Headers) -> None:
    rule = {"id": "remediate", "priority": 5, "match": {"types": ["remediation"]}}
    assert client.post("/api/v1/routing-rules", json=rule, headers=pm).status_code == 201
    item = create(client, pm, {"type": "investigation", "title": "slow", "payload": INVESTIGATION})
    failed = move(client, pm, item["id"], "in_progress", "failed")
    assert failed["status"] == "failed"
    [remediation] = remediations_of(client, item["id"])
    assert remediation.type == "remediation" and remediation.status == "planned"
    decisions = client.get(f"{ITEMS}/{remediation.id}/routing", headers=pm).json()
    assert [(d["trigger"], d["ruleId"]) for d in decisions] == [("created", "remediate")]
    opened = [e for e in history(client, pm, item["id"]) if e["action"] == "remediation_opened"]
    assert [e["details"]["item"] for e in opened] == [remediation.id]
    # A remediation that fails opens no other (no chain without end).
    move(client, pm, remediation.id, "in_progress", "failed")
    assert remediations_of(client, remediation.id) == []


# -- compensate and the run documents, without workers --------------------------------------


def test_compensate_starts_one_saga_per_key_and_refuses_a_second_while_it_runs(
    client: TestClient, pm: Headers, templates: None
) -> None:
    item = create(client, pm, task(payload={"tag": "t1"}, compensation=PLAN))
    url = f"{ITEMS}/{item['id']}/compensate"
    # Still open: nothing to undo yet.
    assert error(client.post(url, headers=pm))["code"] == "conflict"
    no_plan = create(client, pm, task())
    move(client, pm, no_plan["id"], "in_progress", "done")
    assert "no compensation plan" in error(client.post(f"{ITEMS}/{no_plan['id']}/compensate", headers=pm))["message"]

    move(client, pm, item["id"], "in_progress", "done")
    first = client.post(url, json={"reason": "customer cancelled"}, headers={**pm, "Idempotency-Key": "undo-1"})
    assert first.status_code == 202, first.text
    run = first.json()
    assert run["workItemId"] == item["id"] and run["kind"] == "compensation"
    assert [s["stepId"] for s in run["steps"]] == ["undo_two", "undo_one"]  # reverse order of the plan
    assert run["compensationStatus"] == "running" and run["requestedBy"] == "user:pm"
    assert run["steps"][0]["logs"][0]["phase"] == "forward" and run["steps"][0]["startedAt"] is not None
    before = counts(client)
    again = client.post(url, json={"reason": "customer cancelled"}, headers={**pm, "Idempotency-Key": "undo-1"})
    assert again.status_code == 200 and again.json()["runId"] == run["runId"]
    assert counts(client) == before
    other = client.post(url, json={"reason": "other"}, headers={**pm, "Idempotency-Key": "undo-1"})
    assert other.status_code == 409 and error(other)["details"][0]["path"] == "Idempotency-Key"
    second = client.post(url, headers={**pm, "Idempotency-Key": "undo-2"})
    assert second.status_code == 409 and "under way" in error(second)["message"]
    assert counts(client) == before

    runs = client.get(f"{ITEMS}/{item['id']}/runs", headers=pm).json()
    assert [r["runId"] for r in runs] == [run["runId"]]
    assert client.get(f"{ITEMS}/{item['id']}/runs/{run['runId']}", headers=pm).json()["runId"] == run["runId"]
    assert client.get(f"{ITEMS}/{item['id']}/runs/nope", headers=pm).status_code == 404
    assert client.get(f"{ITEMS}/WI-NONE/runs", headers=pm).status_code == 404


def test_another_tenants_item_has_no_runs(
    client: TestClient, pm: Headers, token: TokenFactory, templates: None
) -> None:
    item = create(client, pm, task(payload={"tag": "t2"}, compensation=PLAN))
    move(client, pm, item["id"], "in_progress", "done")
    outsider = token("user:eve", tenant="globex")
    assert client.get(f"{ITEMS}/{item['id']}/runs", headers=outsider).status_code == 404
    assert client.post(f"{ITEMS}/{item['id']}/compensate", headers=outsider).status_code == 404
    assert client.get(f"{ITEMS}/{item['id']}", headers=pm).json()["status"] == "done"
