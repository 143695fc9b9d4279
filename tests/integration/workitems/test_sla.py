"""SLAs on work items: warning, breach with each of the spec's actions, escalation ladders —
fired by the durable timer loop on a clock the test drives, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from models.work_tables import WorkItem, WorkItemEvent
from orchestrator.service.timers import TimerService
from tests.integration.workitems.conftest import Headers, TokenFactory, error, sessions, task
from tests.support import ROOT, eventually


class Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, start: datetime, ms: int) -> None:
        self.now = start + timedelta(milliseconds=ms)


def timer_loop(client: TestClient, clock: Clock) -> TimerService:
    wiring = client.app.state.wiring  # type: ignore[attr-defined]
    return TimerService(wiring.sessions, wiring.settings, wiring.dispatcher, clock=clock)


def created(client: TestClient, headers: Headers, sla: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = client.post("/api/v1/work-items", json=task(sla=sla, **extra), headers=headers)
    assert response.status_code == 201, response.json()
    return dict(response.json())


def started_at(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["created_at"])


def events(client: TestClient, item_id: str) -> list[str]:
    with sessions(client)() as session:
        return list(
            session.scalars(
                select(WorkItemEvent.action).where(WorkItemEvent.item_id == item_id).order_by(WorkItemEvent.id)
            )
        )


@pytest.fixture
def pm(token: TokenFactory) -> Headers:
    # Someone in each group the SLAs escalate to, so those groups are known.
    token("user:nurse", groups=["nurses", "leads", "heads"])
    return token("user:pm", groups=["nurses"])


def test_the_warning_and_the_breach_fire_at_their_offsets(client: TestClient, pm: Headers) -> None:
    item = created(client, pm, {"target_ms": 1000, "warn_at_pct": 50})
    clock = Clock(started_at(item))
    loop = timer_loop(client, clock)
    clock.at(started_at(item), 499)
    assert loop.tick() == 0
    clock.at(started_at(item), 500)
    assert loop.tick() == 1 and events(client, item["id"])[-1] == "sla_warning"
    clock.at(started_at(item), 999)
    assert loop.tick() == 0
    clock.at(started_at(item), 1000)
    assert loop.tick() == 1
    read = client.get(f"/api/v1/work-items/{item['id']}", headers=pm).json()
    assert read["sla_breach_count"] == 1 and read["sla_breached_at"] is not None and read["sla_warned_at"]
    assert events(client, item["id"])[-2:] == ["sla_breached", "notified"]
    clock.at(started_at(item), 60_000)
    assert loop.tick() == 0  # fired once


@pytest.mark.parametrize(
    "action", ["notify", "escalate", "cancel", "open-remediation", "pause", "queue-human-approval"]
)
def test_each_breach_action(client: TestClient, pm: Headers, token: TokenFactory, action: str) -> None:
    sla: dict[str, Any] = {"target_ms": 1000, "breach_action": action}
    if action == "escalate":
        sla["breach_to"] = "leads"
    item = created(client, pm, sla, offer={"type": "human", "group": "nurses"})
    nurse = token("user:n2", groups=["nurses"])
    assert client.post(f"/api/v1/work-items/{item['id']}/claim", headers=nurse).status_code == 200
    clock = Clock(started_at(item))
    clock.at(started_at(item), 1001)
    assert timer_loop(client, clock).tick() == 1
    after = client.get(f"/api/v1/work-items/{item['id']}", headers=pm).json()
    history = events(client, item["id"])
    assert history.count("sla_breached") == 1 and after["sla_breach_count"] == 1
    with sessions(client)() as session:
        follow_ups = session.scalars(select(WorkItem).where(WorkItem.meta["follows"].as_string() == item["id"])).all()
    if action == "notify":
        assert history[-1] == "notified" and after["status"] == "todo"
    elif action == "escalate":
        assert history[-1] == "escalated"
        assert after["offer"] == {"type": "human", "scope": "work:claim", "group": "leads"} and after["claim"] is None
        lead = token("user:lead", groups=["leads"])
        assert [i["id"] for i in client.get("/api/v1/queues/available", headers=lead).json()["items"]] == [item["id"]]
    elif action == "cancel":
        assert history[-1] == "cancelled" and after["status"] == "cancelled" and after["claim"] is None
    elif action == "pause":
        assert history[-1] == "paused" and after["status"] == "blocked"
    elif action == "open-remediation":
        assert history[-1] == "remediation_opened"
        assert [(f.type, f.payload["incidentRef"], f.tenant) for f in follow_ups] == [
            ("remediation", item["id"], "acme")
        ]
    else:
        assert history[-1] == "approval_queued"
        assert [(f.type, f.offer_scope, f.payload["late_item"]) for f in follow_ups] == [
            ("task", "work:supervise", item["id"])
        ]
    if action not in ("open-remediation", "queue-human-approval"):
        assert follow_ups == []


def test_an_escalation_ladder_climbs_in_order_at_its_offsets(client: TestClient, pm: Headers) -> None:
    ladder = [
        {"after_ms": 1000, "action": "notify", "to": "nurses"},
        {"after_ms": 2000, "action": "escalate", "to": "leads"},
        {"after_ms": 3000, "action": "escalate", "to": "heads"},
    ]
    item = created(client, pm, {"target_ms": 60_000, "escalation": ladder})
    clock = Clock(started_at(item))
    loop = timer_loop(client, clock)
    seen = []
    for ms, expected_group in [(999, None), (1000, None), (2000, "leads"), (2999, "leads"), (3000, "heads")]:
        clock.at(started_at(item), ms)
        loop.tick()
        read = client.get(f"/api/v1/work-items/{item['id']}", headers=pm).json()
        assert read["offer"]["group"] == expected_group, ms
        seen.append(events(client, item["id"]).count("escalation_step"))
    assert seen == [0, 1, 2, 2, 3]
    with sessions(client)() as session:
        steps = session.scalars(
            select(WorkItemEvent.details)
            .where(WorkItemEvent.item_id == item["id"], WorkItemEvent.action == "escalation_step")
            .order_by(WorkItemEvent.id)
        ).all()
    assert [s["step"] for s in steps] == [1, 2, 3]


def test_after_downtime_a_late_ladder_still_climbs_in_order(client: TestClient, pm: Headers) -> None:
    ladder = [
        {"after_ms": 1000, "action": "escalate", "to": "nurses"},
        {"after_ms": 2000, "action": "escalate", "to": "leads"},
        {"after_ms": 3000, "action": "escalate", "to": "heads"},
    ]
    item = created(client, pm, {"target_ms": 60_000, "escalation": ladder})
    clock = Clock(started_at(item))
    clock.at(started_at(item), 10_000)  # every step due at once
    assert timer_loop(client, clock).tick() == 3
    assert client.get(f"/api/v1/work-items/{item['id']}", headers=pm).json()["offer"]["group"] == "heads"


ACTIONS = ["notify", "escalate", "cancel", "open-remediation", "pause", "queue-human-approval"]
# The audit row each breach action leaves on the late item.
EFFECT = {
    "notify": "notified",
    "escalate": "escalated",
    "cancel": "cancelled",
    "open-remediation": "remediation_opened",
    "pause": "paused",
    "queue-human-approval": "approval_queued",
}


def test_two_orchestrator_processes_fire_each_breach_once(client: TestClient, pm: Headers, tmp_path: Path) -> None:
    late: dict[str, str] = {}
    for action in ACTIONS:
        sla: dict[str, Any] = {"target_ms": 1000, "breach_action": action}
        if action == "escalate":
            sla["breach_to"] = "leads"
        for _ in range(5):
            late[created(client, pm, sla)["id"]] = action
    with sessions(client)() as session:
        latest = max(session.scalars(select(WorkItem.created_at).where(WorkItem.id.in_(late))).all())
    url = client.app.state.wiring.settings.database_url  # type: ignore[attr-defined]
    go = tmp_path / "go"
    loops = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.timer_loop_process",
                url,
                (latest + timedelta(seconds=5)).isoformat(),
                str(go),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    eventually(lambda: len(list(tmp_path.glob("go.ready-*"))) == 2 or None, timeout=60, what="both loops connected")
    for loop in loops:  # go, both at once
        assert loop.stdin is not None
        loop.stdin.write("go\n")
        loop.stdin.flush()
    outputs = [p.communicate(timeout=120)[0] for p in loops]
    assert [p.returncode for p in loops] == [0, 0]
    assert sum(int(o.strip()) for o in outputs) == len(late)
    with sessions(client)() as session:
        rows = session.execute(
            select(WorkItemEvent.item_id, WorkItemEvent.action).where(WorkItemEvent.item_id.in_(late))
        ).all()
        follow_ups = Counter(
            session.scalars(select(WorkItem.meta["follows"].as_string()).where(WorkItem.id.not_in(late))).all()
        )
    seen = Counter(rows)
    for item_id, action in late.items():
        assert seen[(item_id, "sla_breached")] == 1, (item_id, action)
        assert seen[(item_id, EFFECT[action])] == 1, (item_id, action)
        assert follow_ups[item_id] == (1 if action in ("open-remediation", "queue-human-approval") else 0)


def test_finished_work_stops_its_clock(client: TestClient, pm: Headers, token: TokenFactory) -> None:
    item = created(client, pm, {"target_ms": 1000, "escalation": [{"after_ms": 2000, "action": "notify"}]})
    me = token("user:me")
    client.post(f"/api/v1/work-items/{item['id']}/start", headers=me)
    client.post(f"/api/v1/work-items/{item['id']}/complete", json={}, headers=me)
    client.post(f"/api/v1/work-items/{item['id']}/transition", json={"to": "done"}, headers=pm)
    clock = Clock(started_at(item))
    clock.at(started_at(item), 10_000)
    assert timer_loop(client, clock).tick() == 0
    assert "sla_breached" not in events(client, item["id"])


@pytest.mark.parametrize(
    ("sla", "path"),
    [
        ({"target_ms": -5}, "body.sla.target_ms"),
        ({"target_ms": 1000, "warn_at_pct": 120}, "body.sla.warn_at_pct"),
        ({"target_ms": 1000, "breach_action": "explode"}, "body.sla.breach_action"),
        ({"target_ms": 1000, "breach_action": "escalate"}, "body.sla"),
        ({"target_ms": 1000, "escalation": [{"after_ms": 5, "action": "escalate", "to": "ghosts"}]}, "sla"),
        (
            {
                "target_ms": 1000,
                "escalation": [{"after_ms": 9, "action": "notify"}, {"after_ms": 5, "action": "notify"}],
            },
            "body.sla",
        ),
    ],
)
def test_a_bad_sla_is_refused_and_nothing_is_written(
    client: TestClient, pm: Headers, sla: dict[str, Any], path: str
) -> None:
    response = client.post("/api/v1/work-items", json=task(sla=sla), headers=pm)
    assert response.status_code == 422, response.json()
    assert path in [d["path"] for d in error(response)["details"]]
    with sessions(client)() as session:
        assert session.scalars(select(WorkItem.id)).all() == []
