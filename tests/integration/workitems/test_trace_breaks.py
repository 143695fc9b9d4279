"""Broken traceability chains (the work-items spec §13.1), on SQLite and PostgreSQL: the real-time
check as an item is created, moved and completed; the nightly validation as a durable timer per
tenant; and for each broken link, once: an audit row, a webhook POST, a remediation item."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text

from models.base import utcnow
from models.enums import TimerKind
from models.tables import Timer
from models.trace_tables import TRACE_BREAKS, AgentActionRow, ArtifactRow
from models.work_tables import WorkItem
from orchestrator.service.timers import TimerService
from orchestrator.service.webhooks import WebhookSender
from orchestrator.traceability import realtime
from orchestrator.traceability.ids import action_id
from orchestrator.traceability.nightly import TAKEN_FOR, key_of, next_run
from tests.integration.workitems.conftest import Headers, TokenFactory, sessions, task
from tests.integration.workitems.test_traceability import AGENT_SCOPES, agent_item, goal, unapproved_gate, validate
from tests.integration.workitems.test_webhooks import Clock, allow_private, register
from tests.support import eventually
from tests.webhook_receiver import Receiver, webhook_receiver


@pytest.fixture
def receiver(client: TestClient) -> Iterator[Receiver]:
    allow_private(client)  # the receiver listens on 127.0.0.1
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def ops(token: TokenFactory) -> Headers:
    return token("user:ops", scopes=["work:read", "work:write", "webhooks"])


def wiring(client: TestClient) -> Any:
    return client.app.state.wiring  # type: ignore[attr-defined]


def remediations(client: TestClient) -> list[WorkItem]:
    with sessions(client)() as session:
        return list(session.scalars(select(WorkItem).where(WorkItem.type == "remediation").order_by(WorkItem.id)))


def break_rows(client: TestClient) -> list[dict[str, Any]]:
    with sessions(client)() as session:
        return [dict(r._mapping) for r in session.execute(select(TRACE_BREAKS).order_by(TRACE_BREAKS.c.id))]


def deliver(client: TestClient, clock: Clock | None = None) -> int:
    sender = WebhookSender(sessions(client), wiring(client).settings, clock=clock or utcnow)
    try:
        return sender.deliver_due()
    finally:
        sender.close()


def work(client: TestClient, agent: Headers, item_id: str) -> int:
    base = f"/api/v1/work-items/{item_id}"
    claimed = client.post(f"{base}/claim", headers=agent)
    assert claimed.status_code == 200, claimed.text
    epoch = int(claimed.json()["lease_epoch"])
    assert client.post(f"{base}/start", json={"lease_epoch": epoch}, headers=agent).status_code == 200
    return epoch


# -- the real-time check -----------------------------------------------------------------------


def test_an_item_naming_a_goal_not_registered_is_a_broken_link_raised_once(
    client: TestClient, ops: Headers, receiver: Receiver
) -> None:
    register(client, ops, receiver.url, ["traceability.broken"])
    # A tenant that keeps no goal registry names goals as it likes.
    agent_item(client, ops, related_goals=["GOAL-UNREG-1"])
    assert break_rows(client) == []
    client.post("/api/v1/goals", json=goal(), headers=ops)
    whole = agent_item(client, ops, related_goals=["GOAL-FINSERV-001"])
    assert break_rows(client) == [] and remediations(client) == []

    first = agent_item(client, ops, related_goals=["GOAL-FINSERV-001", "GOAL-UNREG-1"])
    trace = client.get(f"/api/v1/work-items/{first}/trace", headers=ops).json()
    [link] = trace["brokenLinks"]
    assert (link["check"], link["subject"], link["workItemId"], link["foundBy"]) == (
        "goalToWorkItemLinkage",
        "GOAL-UNREG-1",
        first,
        "realtime",
    )
    [opened] = remediations(client)
    assert link["remediationId"] == opened.id and opened.payload["incidentRef"] == first
    history = client.get(f"/api/v1/work-items/{first}/history", headers=ops).json()
    assert [e["details"]["check"] for e in history if e["action"] == "trace_broken"] == ["goalToWorkItemLinkage"]

    # The same break seen again (another item naming the code, the item moving): nothing new.
    second = agent_item(client, ops, related_goals=["GOAL-UNREG-1"])
    assert client.post(f"/api/v1/work-items/{first}/transition", json={"to": "cancelled"}, headers=ops).status_code
    assert len(break_rows(client)) == 1 and len(remediations(client)) == 1
    assert client.get(f"/api/v1/work-items/{second}/trace", headers=ops).json()["brokenLinks"] == []
    assert client.get(f"/api/v1/work-items/{whole}/trace", headers=ops).json()["brokenLinks"] == []

    assert deliver(client) == 1
    [posted] = receiver.requests
    assert posted.headers["x-workyard-event"] == "traceability.broken"
    body = json.loads(posted.body)
    assert body["tenant"] == "acme"
    assert body["data"] | {"detail": "-"} == {
        "check": "goalToWorkItemLinkage",
        "subject": "GOAL-UNREG-1",
        "work_item_id": first,
        "detail": "-",
        "found_by": "realtime",
        "remediation_id": opened.id,
    }
    # Registering the goal mends the chain for what comes next; the recorded break stays on file.
    client.post("/api/v1/goals", json=goal("GOAL-UNREG-1"), headers=ops)
    agent_item(client, ops, related_goals=["GOAL-UNREG-1"])
    report = validate(client, ops)
    assert report["recordedBreaksCount"] == 1 and report["recordedBreaks"][0]["subject"] == "GOAL-UNREG-1"


def test_an_agents_transition_finds_an_action_lost_earlier(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    agent = token("agent:a1", scopes=AGENT_SCOPES)
    item_id = agent_item(client, ops)
    epoch = work(client, agent, item_id)
    assert break_rows(client) == []
    # The claim's action is lost (a restore from an old backup, a hand-edited table).
    with sessions(client).begin() as session:
        session.execute(delete(AgentActionRow).where(AgentActionRow.id == action_id(item_id, "a1", 1)))
    done = client.post(
        f"/api/v1/work-items/{item_id}/complete", json={"lease_epoch": epoch, "result": {"ok": 1}}, headers=agent
    )
    assert done.status_code == 200, done.text
    [row] = break_rows(client)
    assert (row["check_name"], row["subject"], row["item_id"], row["found_by"]) == (
        "workItemToActionLinkage",
        item_id,
        item_id,
        "realtime",
    )
    assert row["remediation_id"] == remediations(client)[0].id
    one = validate(client, ops, itemId=item_id)
    assert one["checks"]["workItemToActionLinkage"]["orphanedWorkItems"] == [item_id]
    assert [b["subject"] for b in one["recordedBreaks"]] == [item_id] and one["recordedBreaksCount"] == 1


def test_a_whole_chain_raises_nothing(client: TestClient, ops: Headers, token: TokenFactory) -> None:
    agent = token("agent:a1", scopes=AGENT_SCOPES)
    client.post("/api/v1/goals", json=goal(), headers=ops)
    item_id = agent_item(client, ops, related_goals=["GOAL-FINSERV-001"])
    epoch = work(client, agent, item_id)
    evidence = {"id": "ev-1", "evidenceType": "attachment", "artifacts": [{"content": "minutes"}]}
    assert client.post(f"/api/v1/work-items/{item_id}/evidence", json=evidence, headers=agent).status_code == 201
    body = {"lease_epoch": epoch, "result": {"ok": 1}}
    assert client.post(f"/api/v1/work-items/{item_id}/complete", json=body, headers=agent).status_code == 200
    assert break_rows(client) == [] and remediations(client) == []
    assert client.get(f"/api/v1/work-items/{item_id}/trace", headers=ops).json()["brokenLinks"] == []


def test_the_check_finds_a_missing_artifact_and_a_gate_passed_without_its_approval(
    client: TestClient, ops: Headers
) -> None:
    """What the API cannot be made to do (a completion with no artifact, a gate passed without
    the approval it needed) is checked on the audit row as ``work/audit.py`` hands it over."""
    item_id = agent_item(client, ops)
    with sessions(client).begin() as session:
        found = realtime.check(
            session,
            item_id=item_id,
            tenant="acme",
            related_goals=[],
            action="completed",
            actor="agent:a1",
            to_status="done",
            details={"result_sha256": "0" * 64},
            action_id=action_id(item_id, "a1", 1),
        )
        gate = {"transition": "review->done", "hitl": True, "approvals": [], "evidence": []}
        found += realtime.check(
            session,
            item_id=item_id,
            tenant="acme",
            related_goals=[],
            action="gate_passed",
            actor="user:pm",
            to_status=None,
            details=gate,
            action_id=None,
        )
        approved = realtime.check(
            session,
            item_id=item_id,
            tenant="acme",
            related_goals=[],
            action="gate_passed",
            actor="user:pm",
            to_status=None,
            details=gate | {"approvals": ["AP-1"]},
            action_id=None,
        )
    assert [(f.check, f.subject) for f in found] == [
        ("actionToArtifactLinkage", action_id(item_id, "a1", 1)),
        ("approvalTraceability", item_id),
    ]
    assert approved == []


# -- the nightly validation --------------------------------------------------------------------


def timers_of_kind(client: TestClient) -> dict[str, Timer]:
    with sessions(client)() as session:
        return {
            t.payload["tenant"]: t
            for t in session.scalars(select(Timer).where(Timer.kind == TimerKind.trace_validation.value))
        }


def test_the_nightly_validation_is_a_timer_per_tenant_that_raises_each_break_once(
    client: TestClient, ops: Headers, token: TokenFactory, receiver: Receiver
) -> None:
    register(client, ops, receiver.url, ["traceability.broken"])
    agent = token("agent:a1", scopes=AGENT_SCOPES)
    token("user:g", tenant="globex")
    item_id = agent_item(client, ops)
    other = client.post("/api/v1/work-items", json=task(title="theirs"), headers=token("user:g2", tenant="globex"))
    assert other.status_code == 201, other.text
    epoch = work(client, agent, item_id)
    assert (
        client.post(
            f"/api/v1/work-items/{item_id}/complete", json={"lease_epoch": epoch, "result": 1}, headers=agent
        ).status_code
        == 200
    )
    assert break_rows(client) == []
    # Broken behind the real-time check's back: a completion's artifact, a gate passage's approval.
    completed = action_id(item_id, "a1", 3)
    with sessions(client).begin() as session:
        session.execute(delete(ArtifactRow).where(ArtifactRow.action_id == completed))
        unapproved_gate(session, item_id, "user:ops", hitl=True)

    hour = wiring(client).settings.trace_validation_hour
    now = datetime.now(UTC)
    clock = Clock(now)
    service = TimerService(wiring(client).sessions, wiring(client).settings, wiring(client).dispatcher, clock=clock)
    assert service.arm_nightly() == 2  # acme and globex
    assert service.arm_nightly() == 0  # within the hour: not again
    armed = timers_of_kind(client)
    assert sorted(armed) == ["acme", "globex"]
    due = next_run(now, hour)
    assert armed["acme"].key == key_of("acme") and armed["acme"].due_at == due and due.hour == hour

    # Its night: both tenants validated; acme's two breaks recorded, notified and remediated.
    clock.now = due + timedelta(seconds=1)
    assert service.tick() >= 2  # with the agent's lease and stall clocks, long due by then
    assert service.validations.idle(30)  # the validations run on the service's worker
    rows = break_rows(client)
    assert sorted((r["check_name"], r["subject"], r["found_by"]) for r in rows) == [
        ("actionToArtifactLinkage", completed, "nightly"),
        ("approvalTraceability", item_id, "nightly"),
    ]
    assert {r["item_id"] for r in rows} == {item_id}
    opened = remediations(client)
    assert len(opened) == 2 and {r["remediation_id"] for r in rows} == {o.id for o in opened}
    assert {o.tenant for o in opened} == {"acme"}
    # Re-armed for the same hour the next night, not deleted.
    rearmed = timers_of_kind(client)
    assert rearmed["acme"].due_at == due + timedelta(days=1) == rearmed["globex"].due_at
    assert deliver(client, clock) == 2
    assert sorted(json.loads(r.body)["data"]["check"] for r in receiver.requests) == [
        "actionToArtifactLinkage",
        "approvalTraceability",
    ]

    # A restart (a new timer loop on the same database), the next night: the same breaks, found
    # again, open nothing new.
    clock.now = due + timedelta(days=1, seconds=1)
    restarted = TimerService(wiring(client).sessions, wiring(client).settings, wiring(client).dispatcher, clock=clock)
    assert restarted.arm_nightly() == 0  # every tenant has its timer
    assert restarted.tick() == 2
    assert restarted.validations.idle(30)
    assert len(break_rows(client)) == 2 and len(remediations(client)) == 2
    assert deliver(client, clock) == 0
    assert timers_of_kind(client)["acme"].due_at == due + timedelta(days=2)
    report = validate(client, ops)
    assert report["overallStatus"] == "broken" and report["recordedBreaksCount"] == 2


def test_the_nightly_hour_is_a_setting_and_a_new_tenant_is_armed(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    agent_item(client, ops)
    now = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)
    w = wiring(client)
    service = TimerService(w.sessions, w.settings, w.dispatcher, clock=lambda: now)
    assert service.arm_nightly() == 1
    assert timers_of_kind(client)["acme"].due_at == datetime(2026, 12, 6, w.settings.trace_validation_hour, tzinfo=UTC)
    assert next_run(datetime(2026, 12, 5, 1, 59, tzinfo=UTC), 2) == datetime(2026, 12, 5, 2, tzinfo=UTC)
    assert next_run(datetime(2026, 12, 5, 2, 0, tzinfo=UTC), 2) == datetime(2026, 12, 6, 2, tzinfo=UTC)

    # An operator moves it to 04:00: the armed timer moves; a tenant new since is armed too.
    moved = TimerService(w.sessions, w.settings.model_copy(update={"trace_validation_hour": 4}), w.dispatcher)
    moved.clock = lambda: now
    client.post("/api/v1/goals", json=goal(), headers=token("user:n", tenant="newco"))
    assert moved.arm_nightly() == 2
    timers = timers_of_kind(client)
    assert {t: (v.due_at, v.payload["hour"]) for t, v in timers.items()} == {
        "acme": (datetime(2026, 12, 6, 4, tzinfo=UTC), 4),
        "newco": (datetime(2026, 12, 6, 4, tzinfo=UTC), 4),
    }
    with sessions(client)() as session:
        assert session.scalar(select(func.count()).select_from(Timer)) == 2


def test_a_running_timer_loop_arms_the_nightly_validation_itself(client: TestClient, ops: Headers) -> None:
    agent_item(client, ops)
    w = wiring(client)
    service = TimerService(w.sessions, w.settings, w.dispatcher)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    loop.start()
    try:
        eventually(lambda: "acme" in timers_of_kind(client), timeout=10, what="the nightly timer of acme")
    finally:
        stop.set()
        service.wake.set()
        loop.join(timeout=10)
    assert not loop.is_alive()


def test_a_nightly_run_that_dies_leaves_its_timer_due_again_within_the_hour(client: TestClient, ops: Headers) -> None:
    item_id = agent_item(client, ops)
    with sessions(client).begin() as session:
        unapproved_gate(session, item_id, "user:ops", hitl=True)
    w = wiring(client)
    clock = Clock(datetime.now(UTC))
    service = TimerService(w.sessions, w.settings, w.dispatcher, clock=clock)
    service.arm_nightly()
    due = timers_of_kind(client)["acme"].due_at
    # The run fails halfway (a table it reads is gone for the moment), as a process dying would leave it.
    with sessions(client).begin() as session:
        session.execute(text("ALTER TABLE trace_epoch RENAME TO trace_epoch_away"))
    clock.now = due + timedelta(seconds=1)
    service.tick()
    assert service.validations.idle(30)
    assert break_rows(client) == []
    assert timers_of_kind(client)["acme"].due_at == clock.now + TAKEN_FOR
    with sessions(client).begin() as session:
        session.execute(text("ALTER TABLE trace_epoch_away RENAME TO trace_epoch"))
    clock.now += TAKEN_FOR
    service.tick()
    assert service.validations.idle(30)
    assert [(r["check_name"], r["found_by"]) for r in break_rows(client)] == [("approvalTraceability", "nightly")]
    assert timers_of_kind(client)["acme"].due_at == due + timedelta(days=1)


def test_an_agents_start_finds_the_goal_its_item_serves_retired(
    client: TestClient, ops: Headers, token: TokenFactory
) -> None:
    agent = token("agent:a1", scopes=AGENT_SCOPES)
    client.post("/api/v1/goals", json=goal(), headers=ops)
    client.post("/api/v1/goals", json=goal("GOAL-OPS-2"), headers=ops)
    item_id = agent_item(client, ops, related_goals=["GOAL-FINSERV-001", "GOAL-OPS-2"])
    retired = client.patch("/api/v1/goals/GOAL-OPS-2", json={"status": "retired"}, headers=ops)
    assert retired.status_code == 200, retired.text
    assert break_rows(client) == []
    work(client, agent, item_id)  # the start: the agent's work and the item's goals, read together
    assert [(r["check_name"], r["subject"], r["item_id"]) for r in break_rows(client)] == [
        ("goalToWorkItemLinkage", "GOAL-OPS-2", item_id)
    ]
