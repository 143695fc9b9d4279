"""SLAs on whole sagas: a saga waiting on a person is late; each breach action, the warning and
an escalation ladder fire once, at their offsets, on a clock the test drives (SQLite and
PostgreSQL). The saga waits on a work item, so no worker is needed to get it there."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.api import SagaRead
from models.tables import SagaRun, Timer
from models.work_tables import WorkItem
from orchestrator.sagas.timeline import render_saga
from orchestrator.service.timers import TimerService
from tests.integration.workitems.conftest import Headers, TokenFactory, counts, error, sessions


def template(sla: dict[str, Any]) -> dict[str, Any]:
    # A name of its own per test: parsed templates are cached per process by name and version.
    name = f"late.approval.{uuid.uuid4().hex[:8]}"
    return {
        "name": name,
        "version": "1.0.0",
        "steps": [
            {
                "name": "approve",
                "kind": "work_item",
                "work_item": {
                    "type": "task",
                    "title": "Approve {input.tag}",
                    "description": "approve it",
                    "offer": {"type": "human", "scope": "work:claim", "group": "nurses"},
                },
            }
        ],
        "sla": sla,
    }


class Clock:
    def __init__(self, start: datetime):
        self.start = start
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, ms: int) -> None:
        self.now = self.start + timedelta(milliseconds=ms)


@pytest.fixture
def ops(token: TokenFactory) -> Headers:
    # Someone in each group the SLAs escalate to, so those groups are known.
    token("user:nurse", groups=["nurses", "leads", "heads"])
    return token("user:ops", scopes=["sagas:read", "sagas:write", "templates:write", "work:read"], tenant="*")


def started(client: TestClient, ops: Headers, sla: dict[str, Any]) -> tuple[str, TimerService, Clock]:
    body = template(sla)
    response = client.post("/api/v1/templates", json=body, headers=ops)
    assert response.status_code == 201, response.json()
    # A shared template (published by an operator), run for tenant acme: its items open there.
    submit = {"template": body["name"], "input": {"tag": "t1"}, "tenant": "acme"}
    response = client.post("/api/v1/sagas", json=submit, headers=ops)
    assert response.status_code == 202, response.json()
    saga_id = response.json()["id"]
    with sessions(client)() as session:
        created = session.get(SagaRun, saga_id)
        assert created is not None
        clock = Clock(created.created_at)
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return saga_id, TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=clock), clock


def saga(client: TestClient, ops: Headers, saga_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/sagas/{saga_id}", headers=ops)
    assert response.status_code == 200, response.json()
    return dict(response.json())


def items(client: TestClient, saga_id: str) -> list[WorkItem]:
    with sessions(client)() as session:
        return list(session.scalars(select(WorkItem).where(WorkItem.saga_id == saga_id).order_by(WorkItem.created_at)))


def test_the_warning_and_the_breach_fire_once_at_their_offsets(client: TestClient, ops: Headers) -> None:
    saga_id, loop, clock = started(client, ops, {"target_ms": 1000, "warn_at_pct": 80})
    clock.at(799)
    assert loop.tick() == 0
    clock.at(800)
    assert loop.tick() == 1
    clock.at(1000)
    assert loop.tick() == 1
    clock.at(50_000)
    assert loop.tick() == 0  # fired once
    read = saga(client, ops, saga_id)
    assert [e["what"] for e in read["sla_events"]] == ["sla_warning", "sla_breached"]
    assert read["sla_breach_count"] == 1 and read["sla_breached_at"] and read["sla_warned_at"]
    assert read["state"] == "running"  # notify changes nothing else
    shown = render_saga(SagaRead.model_validate(read))
    assert "breached at" in shown and "on breach: notify" in shown and "sla_breached" in shown


@pytest.mark.parametrize(
    "action", ["notify", "escalate", "cancel", "open-remediation", "pause", "queue-human-approval"]
)
def test_each_breach_action_on_a_saga(client: TestClient, ops: Headers, action: str) -> None:
    sla: dict[str, Any] = {"target_ms": 1000, "breach_action": action}
    if action == "escalate":
        sla["breach_to"] = "leads"
    saga_id, loop, clock = started(client, ops, sla)
    [waited_on] = items(client, saga_id)
    clock.at(1000)
    assert loop.tick() == 1
    clock.at(90_000)
    assert loop.tick() == 0
    read = saga(client, ops, saga_id)
    assert read["sla_breach_count"] == 1
    assert [e["what"] for e in read["sla_events"]][0] == "sla_breached"
    after = items(client, saga_id)
    item = next(i for i in after if i.id == waited_on.id)
    others = [i for i in after if i.id != waited_on.id]
    if action == "notify":
        assert read["state"] == "running" and item.status == "todo" and others == []
    elif action == "escalate":
        assert item.offer_group == "leads" and read["sla_events"][-1]["items"] == [item.id] and others == []
    elif action == "pause":
        assert item.status == "blocked" and read["state"] == "running" and others == []
    elif action == "cancel":
        assert read["state"] == "compensated" and item.status == "cancelled"
        assert "SlaBreached" in (read["error"] or "")
    elif action == "open-remediation":
        assert [(o.type, o.tenant, o.payload["incidentRef"]) for o in others] == [
            ("remediation", "ops", f"saga:{saga_id}")
        ]
        assert read["state"] == "running" and item.status == "todo"
    else:
        assert [(o.type, o.offer_scope, o.payload["late_saga"]) for o in others] == [
            ("task", "work:supervise", saga_id)
        ]


def test_an_escalation_ladder_climbs_in_order_at_its_offsets(client: TestClient, ops: Headers) -> None:
    ladder = [
        {"after_ms": 1000, "action": "notify"},
        {"after_ms": 2000, "action": "escalate", "to": "leads"},
        {"after_ms": 3000, "action": "escalate", "to": "heads"},
    ]
    saga_id, loop, clock = started(client, ops, {"target_ms": 60_000, "escalation": ladder})
    groups = []
    for ms in (999, 1000, 2000, 2999, 3000):
        clock.at(ms)
        loop.tick()
        groups.append(items(client, saga_id)[0].offer_group)
    assert groups == ["nurses", "nurses", "leads", "leads", "heads"]
    steps = [e for e in saga(client, ops, saga_id)["sla_events"] if e["what"] == "escalation_step"]
    assert [(s["step"], s["action"]) for s in steps] == [(1, "notify"), (2, "escalate"), (3, "escalate")]


def test_a_saga_that_ended_has_no_clock(client: TestClient, ops: Headers) -> None:
    saga_id, loop, clock = started(client, ops, {"target_ms": 1000, "breach_action": "cancel"})
    clock.at(1000)
    assert loop.tick() == 1  # cancelled: compensated
    with sessions(client)() as session:
        assert session.scalars(select(Timer).where(Timer.saga_id == saga_id)).all() == []


@pytest.mark.parametrize(
    ("sla", "path"),
    [
        ({"target_ms": -5}, "body.sla.target_ms"),
        ({"target_ms": 1000, "breach_action": "explode"}, "body.sla.breach_action"),
        ({"target_ms": 1000, "escalation": [{"after_ms": 5, "action": "escalate", "to": "ghosts"}]}, "sla"),
    ],
)
def test_a_bad_saga_sla_is_refused_at_registration(
    client: TestClient, ops: Headers, sla: dict[str, Any], path: str
) -> None:
    before = counts(client)
    response = client.post("/api/v1/templates", json=template(sla), headers=ops)
    assert response.status_code == 422, response.json()
    assert path in [d["path"] for d in error(response)["details"]]
    assert counts(client) == before
